"""PoseNet inference speed: ms per frame at batch 1, FP32 and FP16 ONNX, CPU (and GPU if present).

Usage::

    .venv/bin/python bench/bench_posenet_inference.py [--posenet M.onnx] [--posenet-fp16 M16.onnx]
        [--threads 2] [--runs 200] [--width 224 --height 168] [--keep-stages N]

``--posenet`` is an exported PoseNet (e.g. the shipped ``models/posenet_demo.onnx``). An FP32
model is also converted to FP16 (:func:`geoloc_ros.posenet.onnxutil.convert_to_fp16`, exactly what
``geoloc posenet export --fp16`` does) and to FP16-weights (float16 weights, float32 arithmetic:
:func:`~geoloc_ros.posenet.onnxutil.store_weights_fp16`, ``--fp16-weights``) in this process; another
model is measured at its own precision, with FP32 only when its FP32 export is given too
(``--posenet FP32.onnx --posenet-fp16 FP16.onnx``). Without
any model, an EfficientNet-Lite0 PoseNet (ImageNet backbone, untrained head: speed does not depend
on the weights' values) is built and exported to FP32 and FP16 in a temporary folder (needs torch;
the measured path itself is onnxruntime only).

Per precision and provider it measures, on 640x480 BGR frames:

- ``preprocess``: resize (or rectification) + RGB + normalisation alone (the baseline every ratio
  refers to), and its parts: ``rectify``/``resize`` and ``tensor`` (RGB, normalisation, NCHW by
  lookup table), beside ``tensor-formula``, the per-pixel arithmetic it replaced (same values);
- ``session``: ``onnxruntime`` run of a preprocessed batch of 1;
- ``end-to-end``: ``PoseNetPredictor.predict`` (preprocess + run + decode + PoseEstimate).

It prints the median and 95th percentile and the ratio of each median to the preprocessing
baseline and to the FP32 end-to-end median, all measured in this process. On a machine without a
CUDA/TensorRT execution provider it says so instead of printing GPU figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from renamed_options import parse_args

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.posenet.inference import CPU, CUDA, TENSORRT, PoseNetPredictor, read_model_info
from geoloc_ros.posenet.preprocess import InputSpec, resize_for_network, to_network_tensor


def timed(fn: Callable[[], object], runs: int, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and process CPU milliseconds of each call (CPU time: the figure that does not
    grow when other jobs share the cores)."""
    for _ in range(warmup):
        fn()
    wall, cpu = np.empty(runs), np.empty(runs)
    for i in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall[i] = (time.perf_counter() - start) * 1e3
        cpu[i] = (time.process_time() - start_cpu) * 1e3
    return wall, cpu


def tensor_by_formula(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """What :func:`to_network_tensor` computed before its lookup table: five passes of arithmetic."""
    rgb = image_bgr[None, ..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean_rgb, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std_rgb, dtype=np.float32)
    return np.ascontiguousarray(((rgb - mean) * inv_std).transpose(0, 3, 1, 2))


def build_models(out_dir: Path, width: int, height: int, keep_stages: int | None) -> tuple[Path, Path]:
    import torch

    from geoloc_ros.posenet.checkpoint import TrainedModel
    from geoloc_ros.posenet.export import export_trained_model
    from geoloc_ros.posenet.model import ModelConfig, build_model
    from geoloc_ros.posenet.targets import PoseNormalization

    torch.manual_seed(0)
    config = ModelConfig(input_width=width, input_height=height, keep_stages=keep_stages)
    trained = TrainedModel(
        build_model(config).eval(),
        config,
        PoseNormalization(3, (0.0, 0.0), 50.0),
        PinholeCamera.from_hfov(640, 480, 57.6),
        0,
        {},
    )
    fp32 = export_trained_model(trained, out_dir / "posenet_fp32.onnx").path
    fp16 = export_trained_model(trained, out_dir / "posenet_fp16.onnx", fp16=True).path
    return fp32, fp16


def given_models(model: Path | None, model_fp16: Path | None, tmp: Path) -> dict[str, Path]:
    """The models to measure by precision: those given, plus the FP16 twins of an FP32 ``model``."""
    models: dict[str, Path] = {}
    if model is not None:
        precision = read_model_info(model).precision
        models[precision] = model
        if precision == "fp32":
            import onnx

            from geoloc_ros.posenet.onnxutil import convert_to_fp16, store_weights_fp16

            twin = tmp / f"{model.stem}_fp16w.onnx"
            onnx.save(store_weights_fp16(onnx.load(str(model))), str(twin))
            print(f"fp16-weights: converted from {model.name} in this process")
            models["fp16-weights"] = twin
            if model_fp16 is None:
                twin = tmp / f"{model.stem}_fp16.onnx"
                onnx.save(convert_to_fp16(onnx.load(str(model))), str(twin))
                print(f"fp16: converted from {model.name} in this process")
                models["fp16"] = twin
        elif precision == "fp16" and model_fp16 is None:
            print(
                f"{model.name} is FP16: FP32 not measured "
                "(give the FP32 export as --posenet, FP16 as --posenet-fp16)"
            )
    if model_fp16 is not None:
        models["fp16"] = model_fp16
    order = ("fp32", "fp16-weights", "fp16")
    return dict(sorted(models.items(), key=lambda kv: order.index(kv[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posenet", type=Path, help="exported PoseNet ONNX (default: build one)")
    parser.add_argument("--posenet-fp16", type=Path, help="its FP16 export (default: from --posenet)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (CPU)")
    parser.add_argument("--spin", action="store_true", help="let onnxruntime worker threads spin")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=168)
    parser.add_argument(
        "--keep-stages", type=int, default=None, help="truncated backbone (built models only)"
    )
    parser.add_argument(
        "--camera",
        type=Path,
        help="on-board camera YAML: frames of its size are undistorted onto the training camera "
        "(the vehicle's path; default: plain resize of 640x480 frames)",
    )
    args = parse_args(parser)

    with tempfile.TemporaryDirectory() as tmp:
        models = given_models(args.posenet, args.posenet_fp16, Path(tmp))
        if not models:
            print("building EfficientNet-Lite0 PoseNet models (torch export) ...")
            fp32_path, fp16_path = build_models(Path(tmp), args.width, args.height, args.keep_stages)
            models = {"fp32": fp32_path, "fp16": fp16_path}
        for name, path in models.items():
            print(f"{name}: {path.name} {path.stat().st_size / 1e6:.2f} MB")

        camera = PinholeCamera.load(args.camera) if args.camera else None
        size = (camera.height, camera.width) if camera else (480, 640)
        frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        available = ort.get_available_providers()
        providers = [CPU] + [p for p in (CUDA, TENSORRT) if p in available]
        print(f"onnxruntime {ort.__version__}, providers available: {available}")
        print(
            f"batch 1, {size[1]}x{size[0]} BGR frames{' rectified' if camera else ''}, "
            f"{args.runs} runs after {args.warmup} warm-up, "
            f"CPU threads {args.threads}, spinning {'on' if args.spin else 'off'}"
        )

        cpu_predictor = PoseNetPredictor(
            next(iter(models.values())),
            providers="cpu",
            intra_op_threads=args.threads,
            warmup_runs=0,
            input_camera=camera,
        )
        baseline, baseline_cpu = timed(lambda: cpu_predictor.preprocess([frame]), args.runs, args.warmup)
        base_median = float(np.median(baseline))
        header = (
            f"{'provider':<28}{'precision':<14}{'what':<16}{'median ms':>10}{'p95 ms':>9}"
            f"{'x preproc':>11}{'x fp32 e2e':>12}{'CPU ms':>9}"
        )
        print(header)
        print("-" * len(header))
        spec = cpu_predictor.spec
        rectifier = cpu_predictor._rectifier
        if rectifier is not None:
            stage, resize = "rectify", rectifier
        else:
            stage, resize = "resize", lambda im: resize_for_network(im, spec)
        small = resize(frame)
        parts = {
            "preprocess": (baseline, baseline_cpu),
            stage: timed(lambda: resize(frame), args.runs, args.warmup),
            "tensor": timed(lambda: to_network_tensor([small], spec), args.runs, args.warmup),
            "tensor-formula": timed(lambda: tensor_by_formula(small, spec), args.runs, args.warmup),
        }
        for what, (samples, cpu) in parts.items():
            print(
                f"{'(numpy/OpenCV)':<28}{'-':<14}{what:<16}{np.median(samples):>10.3f}"
                f"{np.percentile(samples, 95):>9.3f}{np.median(samples) / base_median:>11.2f}{'':>12}"
                f"{np.median(cpu):>9.3f}"
            )
        for provider in providers:
            fp32_e2e = None
            for precision, path in models.items():
                predictor = PoseNetPredictor(
                    path,
                    providers=[provider],
                    intra_op_threads=args.threads,
                    allow_spinning=args.spin,
                    warmup_runs=0,
                    input_camera=camera,
                )
                if predictor.provider != provider:
                    print(
                        f"{provider}: could not be used for {precision} (fell back to {predictor.provider})"
                    )
                    continue
                batch = predictor.preprocess([frame])
                rows = {
                    "session": timed(lambda p=predictor, b=batch: p.run(b), args.runs, args.warmup),
                    "end-to-end": timed(lambda p=predictor: p.predict(frame, 0), args.runs, args.warmup),
                }
                if precision == "fp32":
                    fp32_e2e = float(np.median(rows["end-to-end"][0]))
                for what, (samples, cpu) in rows.items():
                    median = float(np.median(samples))
                    vs_fp32 = f"{median / fp32_e2e:>12.2f}" if fp32_e2e else f"{'':>12}"
                    print(
                        f"{provider:<28}{precision:<14}{what:<16}{median:>10.3f}"
                        f"{np.percentile(samples, 95):>9.3f}{median / base_median:>11.2f}{vs_fp32}"
                        f"{np.median(cpu):>9.3f}"
                    )
        if len(providers) == 1:
            print(
                "GPU: no CUDA or TensorRT execution provider in this onnxruntime build / machine: "
                "GPU figures not measured (install onnxruntime-gpu on a GPU machine to get them)."
            )


if __name__ == "__main__":
    main()
