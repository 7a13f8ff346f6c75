"""Query frames: rectified to the map's camera model, then described with map-compatible features.

The map's views are distortion-free pinhole images in ``MapBundle.camera``; a query frame must be in
the same model for the features to match and for PnP to use the map's intrinsics. A frame from
another camera (a raw, distorted one from a bag, or a processing camera of another size) is
remapped in one ``cv2.remap`` (:class:`~geoloc_ros.camera.rectify.Rectifier`), on the grey image
(a third of the work of a colour one).

Feature kinds marked ``on_demand`` (:mod:`geoloc_ros.bovw.kinds`; MSER by default) are extracted
separately and only when needed (global re-localization retrieves with every bag; tracking matches
the other kinds only), so a frame prepared without them can get them later from its grey image:
:meth:`QueryPreparer.add_on_demand`. Features are a deterministic function of the image, so it
does not matter which thread extracts them or when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from geoloc_ros.bovw.features import FeatureConfig, FeatureExtractor, FeatureSet
from geoloc_ros.bovw.kinds import feature_kind, feature_kind_names
from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.camera.rectify import Rectifier
from geoloc_ros.localize.config import QueryFeaturesConfig
from geoloc_ros.localize.errors import QueryFrameError


def query_feature_config(map_query_config: FeatureConfig, config: QueryFeaturesConfig) -> FeatureConfig:
    """The map's query settings (``MapBundle.query_feature_config(config.fast)``) with our caps.

    MSER and descriptor settings stay the map's (regions must be detected and described alike);
    only the SIFT scale (fast mode) and the feature caps change.
    """
    updates: dict[str, float | int] = {"sift_max_features": config.sift_max_features}
    if config.fast:
        updates["sift_scale"] = config.sift_scale
    return map_query_config.model_copy(update=updates)


@dataclass(frozen=True)
class QueryFrame:
    """A frame ready for matching: ``grey`` in the map camera's model and its features.

    ``features`` holds the features of the always-extracted kinds (SIFT) first, then those of the
    on-demand kinds (MSER) when ``has_on_demand``.
    """

    stamp_ns: int
    grey: np.ndarray
    features: FeatureSet
    has_on_demand: bool
    features_ms: float

    def without_on_demand(self) -> QueryFrame:
        """This frame without the features of on-demand kinds (itself when it has none)."""
        if not self.has_on_demand:
            return self
        specs = [feature_kind(name) for name in feature_kind_names()]
        keep = ~np.isin(self.features.kind, [spec.code for spec in specs if spec.on_demand])
        return replace(self, features=self.features.subset(keep), has_on_demand=False)


class QueryPreparer:
    """Rectifies frames into ``map_camera`` and extracts query features. Holds OpenCV objects: use
    one per thread."""

    def __init__(
        self,
        map_camera: PinholeCamera,
        feature_config: FeatureConfig,
        input_camera: PinholeCamera | None = None,
    ) -> None:
        if map_camera.is_distorted:
            raise QueryFrameError("the map camera must be distortion-free")
        self.map_camera = map_camera
        self.feature_config = feature_config
        self._extractor = FeatureExtractor(feature_config)
        enabled = self._extractor.kinds
        self._always = [name for name in enabled if not feature_kind(name).on_demand]
        self._on_demand = [name for name in enabled if feature_kind(name).on_demand]
        self._rectifier: Rectifier | None = None
        self.input_camera = map_camera
        self.set_input_camera(input_camera if input_camera is not None else map_camera)

    def set_input_camera(self, camera: PinholeCamera) -> None:
        """Frames will come from ``camera`` (the remap is rebuilt only when the camera changes)."""
        if camera == self.input_camera and self._rectifier is not None:
            return
        self.input_camera = camera
        self._rectifier = None if camera == self.map_camera else Rectifier(camera, self.map_camera)

    def rectify(self, image: np.ndarray) -> np.ndarray:
        """The grey image in the map camera's model."""
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise QueryFrameError(
                f"query frame must be a uint8 grey or BGR image, got {image.dtype} {image.shape}"
            )
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        height, width = grey.shape
        if (width, height) != self.input_camera.size:
            raise QueryFrameError(
                f"query frame is {width}x{height} but its camera model is "
                f"{self.input_camera.width}x{self.input_camera.height}"
            )
        if self._rectifier is None:
            return np.ascontiguousarray(grey)
        try:
            return self._rectifier(grey)
        except CameraModelError as exc:
            raise QueryFrameError(str(exc)) from None

    def prepare(self, image: np.ndarray, stamp_ns: int, with_on_demand: bool) -> QueryFrame:
        """Rectify and extract the always-extracted kinds (and the on-demand ones when ``with_on_demand``)."""
        start = time.perf_counter()
        grey = self.rectify(image)
        on_demand = with_on_demand and bool(self._on_demand)
        names = self._always + self._on_demand if on_demand else self._always
        parts = [self._extractor.extract_kind(name, grey) for name in names]
        features = FeatureSet.concatenate(parts) if parts else FeatureSet.empty(self.map_camera.size)
        elapsed = (time.perf_counter() - start) * 1e3
        return QueryFrame(int(stamp_ns), grey, features, on_demand, elapsed)

    def add_on_demand(self, frame: QueryFrame) -> QueryFrame:
        """``frame`` with the on-demand kinds' features appended (unchanged when it already has them)."""
        if frame.has_on_demand or not self._on_demand:
            return frame
        start = time.perf_counter()
        parts = [self._extractor.extract_kind(name, frame.grey) for name in self._on_demand]
        features = FeatureSet.concatenate([frame.features, *parts])
        elapsed = (time.perf_counter() - start) * 1e3
        return replace(frame, features=features, has_on_demand=True, features_ms=frame.features_ms + elapsed)
