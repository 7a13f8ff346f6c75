"""BoVW + PnP-RANSAC localization against a map bundle: frame in, ``base_link`` pose with covariance out.

:class:`Localizer` is the per-frame core (candidates, matching, PnP-RANSAC, refinement, covariance,
rejection, tracking); :func:`geoloc_ros.pipelines.localize_drive.localize_drive` runs it over a
recorded drive (``geoloc localize``) and the ``bovw_localizer`` node over live frames. ROS-free.
"""

from geoloc_ros.localize.config import LocalizerConfig, load_localizer_config
from geoloc_ros.localize.errors import (
    DriveLocalizationError,
    LocalizeError,
    LocalizerSetupError,
    QueryFrameError,
)
from geoloc_ros.localize.localizer import (
    STATUS_LOCALIZED,
    LocalizationResult,
    Localizer,
    PositionPrior,
    StageTimings,
)

__all__ = [
    "STATUS_LOCALIZED",
    "DriveLocalizationError",
    "LocalizationResult",
    "LocalizeError",
    "Localizer",
    "LocalizerConfig",
    "LocalizerSetupError",
    "PositionPrior",
    "QueryFrameError",
    "StageTimings",
    "load_localizer_config",
]
