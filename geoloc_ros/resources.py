"""Files shipped beside the package: config/ and models/ (source checkout or installed share/)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

PACKAGE = "geoloc_ros"


def share_file(relative: str) -> Path | None:
    """``config/geoloc.yaml`` or ``models/x.onnx`` from the source checkout (editable installs) or
    from ``<prefix>/share/geoloc_ros`` (regular and ament installs); None when absent."""
    candidates = [
        Path(__file__).resolve().parents[1] / relative,
        Path(sys.prefix) / "share" / PACKAGE / relative,
    ]
    with contextlib.suppress(ImportError, LookupError, OSError):  # not an ament install or not indexed
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / relative)
    return next((p for p in candidates if p.is_file()), None)
