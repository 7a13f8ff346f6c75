"""Sources of training views and the held-out split by location (torch-free).

A :class:`ViewSource` is anything with a camera model, a length, and per view a BGR image, its
camera pose ``T_map_optical`` and a location group id (the panorama the view was rendered from):
the map bundle's rectified and virtual views in production, :class:`ArrayViewSource` in tests,
:class:`FolderViewSource` for views kept as image files.

Adapting the map bundle needs only a class with these five members (see the docstring of
:class:`ViewSource`); no inheritance is required.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
import yaml
from pydantic import Field, ValidationError

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel, format_validation_error
from geoloc_ros.errors import GeolocError
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.io.atomic import atomic_directory
from geoloc_ros.posenet.errors import DatasetError

VIEWS_FILE = "views.jsonl"
CAMERA_FILE = "camera.yaml"
# Two sources' cameras are "the same up to scale" when their normalised intrinsics (fx/w, fy/h,
# (cx+0.5)/w, (cy+0.5)/h) agree to this relative tolerance.
_SAME_CAMERA_TOLERANCE = 2e-3


@runtime_checkable
class ViewSource(Protocol):
    """Training views: what :func:`geoloc_ros.posenet.train.train` reads.

    - ``camera``: the undistorted pinhole model shared by every view (640x480 in the bundle);
    - ``len(source)``: number of views;
    - ``image(i)``: BGR uint8 ``(camera.height, camera.width, 3)``;
    - ``pose(i)``: ``T_map_optical`` of view ``i`` (:class:`~geoloc_ros.geometry.pose.Pose3D`);
    - ``group(i)``: location id used for the held-out split, e.g. the source panorama id (views
      rendered from one panorama, or from virtual positions around it, share it).
    """

    @property
    def camera(self) -> PinholeCamera: ...

    def __len__(self) -> int: ...

    def image(self, index: int) -> np.ndarray: ...

    def pose(self, index: int) -> Pose3D: ...

    def group(self, index: int) -> str: ...


def check_view_image(image: object, camera: PinholeCamera, what: str) -> np.ndarray:
    """Validate one view image against the source's camera size."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise DatasetError(f"{what}: image must be a uint8 BGR array, got {kind}")
    if image.shape != (camera.height, camera.width, 3):
        raise DatasetError(
            f"{what}: image shape {image.shape} differs from the camera's "
            f"({camera.height}, {camera.width}, 3)"
        )
    return image


class ArrayViewSource:
    """Views held in memory: images ``(N, H, W, 3)`` uint8 BGR (or a list), poses, groups."""

    def __init__(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        poses: Sequence[Pose3D],
        groups: Sequence[str],
        camera: PinholeCamera,
    ) -> None:
        n = len(images)
        if len(poses) != n or len(groups) != n:
            raise DatasetError(f"{n} images but {len(poses)} poses and {len(groups)} groups")
        for i in range(n):
            check_view_image(images[i], camera, f"view {i}")
            if not isinstance(poses[i], Pose3D) or not np.all(np.isfinite(poses[i].as_matrix())):
                raise DatasetError(f"view {i}: pose must be a finite Pose3D (T_map_optical)")
        self._images = images
        self._poses = list(poses)
        self._groups = [str(g) for g in groups]
        self._camera = camera

    @property
    def camera(self) -> PinholeCamera:
        return self._camera

    def __len__(self) -> int:
        return len(self._poses)

    def image(self, index: int) -> np.ndarray:
        return np.asarray(self._images[index])

    def pose(self, index: int) -> Pose3D:
        return self._poses[index]

    def group(self, index: int) -> str:
        return self._groups[index]


class _ViewRecord(StrictModel):
    """One line of ``views.jsonl``."""

    image: str = Field(min_length=1)
    translation: tuple[float, float, float]
    quaternion: tuple[float, float, float, float] = Field(description="T_map_optical rotation, (x, y, z, w)")
    group: str = Field(min_length=1)


class FolderViewSource:
    """Views stored as image files: ``views.jsonl`` + ``camera.yaml`` + the images.

    ``views.jsonl`` has one JSON object per view: ``image`` (path relative to the folder),
    ``translation`` ``[x, y, z]`` and ``quaternion`` ``[x, y, z, w]`` of ``T_map_optical``, and
    ``group`` (location id). ``camera.yaml`` is a ROS camera-calibration file
    (:meth:`PinholeCamera.load`) shared by all views.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        views_path = self.directory / VIEWS_FILE
        if not views_path.is_file():
            raise DatasetError(f"{views_path}: view list not found (a view folder needs {VIEWS_FILE})")
        try:
            self._camera = PinholeCamera.load(self.directory / CAMERA_FILE)
        except GeolocError as exc:
            raise DatasetError(str(exc)) from None
        self._records: list[_ViewRecord] = []
        self._poses: list[Pose3D] = []
        for line_no, line in enumerate(views_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{views_path}:{line_no}"
            try:
                record = _ViewRecord.model_validate(json.loads(line))
                pose = Pose3D.from_xyz_quaternion(record.translation, record.quaternion)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: invalid JSON: {exc}") from None
            except ValidationError as exc:
                raise DatasetError(format_validation_error(exc, where)) from None
            except ValueError as exc:
                raise DatasetError(f"{where}: invalid pose: {exc}") from None
            self._records.append(record)
            self._poses.append(pose)
        if not self._records:
            raise DatasetError(f"{views_path}: no views listed")

    @property
    def camera(self) -> PinholeCamera:
        return self._camera

    def __len__(self) -> int:
        return len(self._records)

    def image(self, index: int) -> np.ndarray:
        path = self.directory / self._records[index].image
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{path}: cannot read image (missing or not an image)")
        return check_view_image(image, self._camera, str(path))

    def pose(self, index: int) -> Pose3D:
        return self._poses[index]

    def group(self, index: int) -> str:
        return self._records[index].group


def write_view_folder(source: ViewSource, directory: str | Path, overwrite: bool = False) -> Path:
    """Write any view source as a :class:`FolderViewSource` folder (PNG images), atomically."""
    target = Path(directory)
    with atomic_directory(target, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i in range(len(source)):
            name = f"images/{i:06d}.png"
            image = check_view_image(source.image(i), source.camera, f"view {i}")
            if not cv2.imwrite(str(tmp / name), image):
                raise DatasetError(f"{target / name}: cannot write image")
            pose = source.pose(i)
            record = {
                "image": name,
                "translation": pose.translation.tolist(),
                "quaternion": pose.quaternion.tolist(),
                "group": source.group(i),
            }
            lines.append(json.dumps(record))
        (tmp / VIEWS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / CAMERA_FILE).write_text(yaml.safe_dump(source.camera.to_dict("views"), sort_keys=False))
    return target


def _normalised_intrinsics(camera: PinholeCamera) -> np.ndarray:
    return np.array(
        [
            camera.fx / camera.width,
            camera.fy / camera.height,
            (camera.cx + 0.5) / camera.width,
            (camera.cy + 0.5) / camera.height,
        ]
    )


def same_camera_up_to_scale(a: PinholeCamera, b: PinholeCamera) -> bool:
    """True when ``a`` and ``b`` are one pinhole model at two image sizes (distortion ignored)."""
    na, nb = _normalised_intrinsics(a), _normalised_intrinsics(b)
    return bool(np.all(np.abs(na - nb) <= _SAME_CAMERA_TOLERANCE * np.abs(nb)))


class ConcatViewSource:
    """Several view sources as one, every image resampled to a common ``camera``.

    The sources' cameras must be the same pinhole model up to image size (e.g. a map bundle's
    640x480 views and drive-height views rendered at 320x240 with the same field of view); the
    default common camera is the smallest of them, and larger images are shrunk with area
    averaging. Groups keep their names (views of one panorama from two sources share a group).
    """

    def __init__(self, sources: Sequence[ViewSource], camera: PinholeCamera | None = None) -> None:
        if not sources:
            raise DatasetError("ConcatViewSource needs at least one source")
        cameras = [s.camera.undistorted() for s in sources]
        target = (
            camera.undistorted() if camera is not None else min(cameras, key=lambda c: c.width * c.height)
        )
        for k, cam in enumerate(cameras):
            if not same_camera_up_to_scale(cam, target):
                raise DatasetError(
                    f"source {k}: camera {cam.width}x{cam.height} (fx {cam.fx:.1f}, cx {cam.cx:.1f}) is not "
                    f"the common camera {target.width}x{target.height} (fx {target.fx:.1f}) up to scale"
                )
        self._sources = list(sources)
        self._camera = target
        self._offsets = np.cumsum([0] + [len(s) for s in sources])

    @property
    def camera(self) -> PinholeCamera:
        return self._camera

    @property
    def sources(self) -> list[ViewSource]:
        return list(self._sources)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _locate(self, index: int) -> tuple[ViewSource, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"view {index} outside [0, {len(self)})")
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self._sources[k], index - int(self._offsets[k])

    def image(self, index: int) -> np.ndarray:
        source, local = self._locate(index)
        image = source.image(local)
        size = (self._camera.width, self._camera.height)
        if (image.shape[1], image.shape[0]) != size:
            shrinking = image.shape[1] >= size[0] and image.shape[0] >= size[1]
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return image

    def pose(self, index: int) -> Pose3D:
        source, local = self._locate(index)
        return source.pose(local)

    def group(self, index: int) -> str:
        source, local = self._locate(index)
        return source.group(local)


@dataclass(frozen=True)
class GroupSplit:
    """View indices of the training and held-out sets; no group appears in both."""

    train_indices: np.ndarray
    val_indices: np.ndarray
    train_groups: tuple[str, ...]
    val_groups: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"train_groups": list(self.train_groups), "val_groups": list(self.val_groups)}


def split_by_group(groups: Sequence[str], val_fraction: float, seed: int) -> GroupSplit:
    """Hold out whole locations: ``ceil(val_fraction * n_groups)`` random groups go to validation.

    At least one group stays in training; ``val_fraction == 0`` gives an empty validation set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray([str(g) for g in groups])
    unique = sorted(set(labels.tolist()))
    if not unique:
        raise DatasetError("cannot split zero views")
    n_val = min(math.ceil(val_fraction * len(unique)), len(unique) - 1) if val_fraction > 0 else 0
    order = np.random.default_rng(seed).permutation(len(unique))
    val_groups = tuple(sorted(unique[i] for i in order[:n_val]))
    is_val = (
        np.isin(labels, np.asarray(val_groups, dtype=labels.dtype))
        if val_groups
        else np.zeros(len(labels), bool)
    )
    train_groups = tuple(g for g in unique if g not in set(val_groups))
    return GroupSplit(np.flatnonzero(~is_val), np.flatnonzero(is_val), train_groups, val_groups)
