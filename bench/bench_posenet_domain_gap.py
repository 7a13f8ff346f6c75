"""Where a PoseNet's drive error comes from: interpolation between training places, or the domain gap.

Usage::

    .venv/bin/python bench/bench_posenet_domain_gap.py --posenet models/posenet_demo.onnx \\
        --bag out/demo/drive --map out/demo/map --rendered out/posenet/demo_at_drive \\
        [--train-views RUN/synthetic_views] [--stride 10] [--config config/posenet/demo.yaml]

Measures the model's camera-pose error (planar position, heading) at the same places on three
kinds of image:

1. **training-like views** (``--train-views``, a random subset of ``--train-samples``): how well the
   model fits the views it learnt from;
2. **views rendered at the drive's true camera poses** from the map's panoramas, with the renderer
   that made the training views (:func:`geoloc_ros.posenet.synthesis.synthesize_views` with
   ``poses``; the poses are the RTK ground truth at every ``--stride``-th frame through the drive's
   camera mounting). They are written once into ``--rendered`` and reused;
3. **the drive's own frames** at the same stamps, rectified onto the training camera exactly as
   ``geoloc posenet evaluate`` does.

(2) vs (1) is the interpolation gap (places and viewpoints of the drive the training views do not
hold, at the same image domain); (3) vs (2) is the domain gap (lighting, sensor, lens,
rectification, traffic, changed posters: everything that differs between a rendered view and a
camera frame at the same pose). (2) and (3) are compared on the frames where a view could be
rendered. The distance from each drive pose to the nearest training view (and the nearest one
looking within 30 degrees of the same way) is printed beside, for the coverage.

``--probes`` then splits the domain gap: the drive frames with each one's per-channel colour mean
and spread matched to its rendered twin's (or one global gain per channel), the sharpness
(Laplacian variance) of both network inputs, and the rendered views with one family of the
training augmentation at a time (occluders, photometric, blur/noise/JPEG, rotation/zoom/lens):
how far the model is from invariant to the nuisances it was trained with.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import cv2
import numpy as np
from renamed_options import parse_args
from scipy.spatial import cKDTree

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import load_yaml
from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.frames import body_pose_from_optical
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.posenet.augment import AugmentConfig, Augmenter
from geoloc_ros.posenet.dataset import FolderViewSource
from geoloc_ros.posenet.inference import PoseNetPredictor
from geoloc_ros.posenet.preprocess import InputRectifier, resize_for_network
from geoloc_ros.posenet.synthesis import synthesize_views
from geoloc_ros.posenet.targets import pose_errors
from geoloc_ros.posenet.train import TrainConfig

logger = logging.getLogger("bench_posenet_domain_gap")


def drive_camera_poses(drive: DriveBag, bundle: MapBundle, stride: int) -> tuple[np.ndarray, list[Pose3D]]:
    """Frame stamps (every ``stride``-th frame with valid ground truth) and the true ``T_map_optical``."""
    truth = drive_ground_truth(drive, bundle.origin)
    stamps = drive.frame_stamps()[::stride]
    at = truth.at(stamps)
    keep = at.valid & np.isfinite(at.yaw)
    base_to_optical = drive.mounting.base_to_optical()
    poses = [
        Pose3D.from_xyz_ypr(p, float(yaw)).compose(base_to_optical)
        for p, yaw in zip(at.positions[keep], at.yaw[keep], strict=True)
    ]
    return stamps[keep], poses


def errors(predictor: PoseNetPredictor, images: list[np.ndarray], poses: list[Pose3D]) -> np.ndarray:
    """(N, 2): planar position error (m) and heading error (deg), in batches of 16."""
    out = []
    for start in range(0, len(images), 16):
        prediction = predictor.predict_camera(images[start : start + 16])
        position, rotation = pose_errors(prediction, poses[start : start + 16])
        out.append(np.stack([position, np.rad2deg(rotation)], axis=1))
    return np.concatenate(out)


def coverage(train: FolderViewSource, poses: list[Pose3D]) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each pose to the nearest training view, and to the nearest looking within 30°."""
    bodies = [body_pose_from_optical(train.pose(i)) for i in range(len(train))]
    xy = np.array([b.translation[:2] for b in bodies])
    yaw = np.array([b.yaw for b in bodies])
    tree = cKDTree(xy)
    nearest, same_way = [], []
    for pose in poses:
        body = body_pose_from_optical(pose)
        distance, _ = tree.query(body.translation[:2])
        nearest.append(distance)
        aligned = np.abs(wrap_angle(yaw - body.yaw)) <= np.deg2rad(30.0)
        same_way.append(float(np.min(np.linalg.norm(xy[aligned] - body.translation[:2], axis=1))))
    return np.asarray(nearest), np.asarray(same_way)


# One family of the training augmentation at a time (probability 1), the others off.
_DEFAULT = AugmentConfig()
_AUGMENT_FAMILIES: dict[str, dict[str, object]] = {
    "occluders": {"occluder_probability": 1.0},
    "photometric (exposure .. colour, ramp)": {
        "exposure_range": _DEFAULT.exposure_range,
        "gamma_range": _DEFAULT.gamma_range,
        "contrast_range": _DEFAULT.contrast_range,
        "saturation_range": _DEFAULT.saturation_range,
        "colour_temperature": _DEFAULT.colour_temperature,
        "gradient_probability": 1.0,
    },
    "blur, motion blur, noise, JPEG": {
        "blur_probability": 1.0,
        "motion_blur_probability": 1.0,
        "noise_probability": 1.0,
        "jpeg_probability": 1.0,
    },
    "rotation, zoom, lens k1": {
        "yaw_deg": _DEFAULT.yaw_deg,
        "pitch_deg": _DEFAULT.pitch_deg,
        "roll_deg": _DEFAULT.roll_deg,
        "scale_range": _DEFAULT.scale_range,
        "distortion_probability": 1.0,
    },
}


def _channel_stats(image: np.ndarray) -> np.ndarray:
    pixels = image.reshape(-1, 3).astype(np.float32)
    return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])


def _match_colour(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``image`` with each channel's mean and spread set to ``target`` (``_channel_stats``)."""
    own = _channel_stats(image)
    pixels = image.astype(np.float32)
    out = (pixels - own[:3]) / np.maximum(own[3:], 1e-3) * target[3:] + target[:3]
    return np.clip(out + 0.5, 0.0, 255.0).astype(np.uint8)


def _sharpness(images: list[np.ndarray]) -> float:
    grey = [cv2.cvtColor(im, cv2.COLOR_BGR2GRAY).astype(np.float32) for im in images]
    return float(np.median([cv2.Laplacian(g, cv2.CV_32F).var() for g in grey]))


def probes(
    predictor: PoseNetPredictor,
    rendered: list[np.ndarray],
    drive_frames: list[np.ndarray],
    poses: list[Pose3D],
    drive: DriveBag,
    camera: PinholeCamera,
) -> None:
    """Print the domain-gap probes (module docstring) for rendered/drive pairs at ``poses``."""
    twin = [_channel_stats(im) for im in rendered]
    own = np.array([_channel_stats(im) for im in drive_frames])
    gain = np.mean(twin, axis=0)[:3] / own.mean(axis=0)[:3]
    predictor.set_input_camera(drive.camera)
    print(
        row(
            "3a drive, colour matched to its rendered twin",
            errors(predictor, [_match_colour(d, t) for d, t in zip(drive_frames, twin, strict=True)], poses),
        )
    )
    gained = [np.clip(d.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8) for d in drive_frames]
    print(row("3b drive, one global gain per channel", errors(predictor, gained, poses)))
    rectifier = InputRectifier(drive.camera, predictor.info.camera, predictor.spec)
    rectified = [rectifier(d) for d in drive_frames]
    predictor.set_input_camera(None)
    resized = [resize_for_network(im, predictor.spec) for im in rendered]
    print(
        f"sharpness of the network inputs (median Laplacian variance): rendered {_sharpness(resized):.0f}, "
        f"drive {_sharpness(rectified):.0f}"
    )
    for name, family in _AUGMENT_FAMILIES.items():
        augmenter = Augmenter(AugmentConfig.only(**family), camera)
        rng = np.random.default_rng(1)
        out = [augmenter(im, pose, rng) for im, pose in zip(rendered, poses, strict=True)]
        print(row(f"2+ rendered, {name}", errors(predictor, [o[0] for o in out], [o[1] for o in out])))


def row(label: str, e: np.ndarray) -> str:
    return (
        f"{label:<52}{len(e):>6}{np.median(e[:, 0]):>10.2f}{np.mean(e[:, 0]):>9.2f}"
        f"{np.median(e[:, 1]):>10.2f}°{100 * np.mean(e[:, 0] <= 2.0):>8.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posenet", type=Path, required=True, help="exported PoseNet (.onnx)")
    parser.add_argument("--bag", type=Path, required=True, help="drive directory (bag/ + RTK)")
    parser.add_argument("--map", type=Path, required=True, help="the bundle the model was trained on")
    parser.add_argument("--rendered", type=Path, required=True, help="view folder for the rendered views")
    parser.add_argument("--config", type=Path, help="TrainConfig YAML whose synthesis settings render")
    parser.add_argument("--train-views", type=Path, help="the model's training view folder")
    parser.add_argument("--train-samples", type=int, default=300)
    parser.add_argument("--stride", type=int, default=10, help="every N-th drive frame")
    parser.add_argument("--workers", type=int, default=1, help="render processes")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--json-out", type=Path, help="write the per-frame errors here")
    parser.add_argument("--probes", action="store_true", help="split the domain gap (module docstring)")
    args = parse_args(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()

    bundle = MapBundle.open(args.map, verify="sizes")
    drive = DriveBag(args.bag)
    stamps, poses = drive_camera_poses(drive, bundle, args.stride)
    config = load_yaml(args.config, TrainConfig) if args.config else TrainConfig()
    if not (args.rendered / "views.jsonl").is_file():
        synthesize_views(bundle, args.rendered, config.data.synthesis, workers=args.workers, poses=poses)
    rendered = FolderViewSource(args.rendered)
    names = [json.loads(line)["image"] for line in (args.rendered / "views.jsonl").read_text().splitlines()]
    index = [int(Path(name).stem) for name in names]  # which pose each rendered view is
    if any(k >= len(poses) for k in index):
        raise SystemExit(
            f"{args.rendered} was rendered for other poses: delete it or give another --rendered"
        )

    # Rendered views are at the training camera: plain resize; drive frames: rectified onto it.
    predictor = PoseNetPredictor(args.posenet, providers="cpu", intra_op_threads=args.threads)
    e_rendered = errors(
        predictor, [rendered.image(i) for i in range(len(rendered))], [poses[k] for k in index]
    )
    predictor.set_input_camera(drive.camera)
    wanted = {int(s): k for k, s in enumerate(stamps)}
    frames: dict[int, np.ndarray] = {}
    for frame in drive.frames(stride=args.stride):
        k = wanted.get(int(frame.stamp_ns))
        if k is not None:
            frames[k] = frame.image
    have = sorted(frames)
    e_drive_all = errors(predictor, [frames[k] for k in have], [poses[k] for k in have])
    e_drive = e_drive_all[[have.index(k) for k in index if k in frames]]
    e_rendered_common = e_rendered[[i for i, k in enumerate(index) if k in frames]]

    print(f"model {args.posenet}; drive {args.bag}: {len(poses)} poses (every {args.stride}th frame)")
    print(f"{'images':<52}{'n':>6}{'median m':>10}{'mean m':>9}{'head med':>11}{'<=2 m':>9}")
    if args.train_views is not None:
        train = FolderViewSource(args.train_views)
        rng = np.random.default_rng(0)
        pick = rng.choice(len(train), size=min(args.train_samples, len(train)), replace=False)
        predictor.set_input_camera(None)
        e_train = errors(predictor, [train.image(int(i)) for i in pick], [train.pose(int(i)) for i in pick])
        print(row("1 training views (random subset)", e_train))
        nearest, same_way = coverage(train, poses)
        print(
            f"coverage: drive pose to nearest training view median {np.median(nearest):.2f} m "
            f"(max {np.max(nearest):.2f}); nearest looking within 30°: median {np.median(same_way):.2f} m "
            f"(90th pct {np.percentile(same_way, 90):.2f})"
        )
    print(row("2 rendered at the drive's true poses", e_rendered_common))
    print(row("3 drive frames, same poses", e_drive))
    print(row("3 drive frames, every sampled pose", e_drive_all))
    if args.probes:
        pairs = [(i, k) for i, k in enumerate(index) if k in frames]
        probes(
            predictor,
            [rendered.image(i) for i, _ in pairs],
            [frames[k] for _, k in pairs],
            [poses[k] for _, k in pairs],
            drive,
            rendered.camera,
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"{len(rendered)} of {len(poses)} poses rendered; {time.perf_counter() - started:.0f} s wall, "
        f"{usage.ru_utime + usage.ru_stime:.0f} s CPU"
    )
    if args.json_out is not None:
        args.json_out.write_text(
            json.dumps(
                {
                    "rendered_index": index,
                    "rendered": e_rendered.tolist(),
                    "drive_index": have,
                    "drive": e_drive_all.tolist(),
                }
            )
        )


if __name__ == "__main__":
    main()
