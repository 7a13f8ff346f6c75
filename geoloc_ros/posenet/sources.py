"""The training set of a run: a map bundle's views, drive-height views rendered from its panoramas,
or a view folder (what ``geoloc posenet train`` feeds :func:`geoloc_ros.posenet.train.train`).

With a map bundle and ``data.synthesis.enabled``, the drive-height views are rendered once into
``RUN/synthetic_views`` (the run directory is prepared first, so an interrupted run resumes with
them) unless a folder rendered with the same settings is given. Torch-free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.posenet.dataset import ConcatViewSource, FolderViewSource, ViewSource
from geoloc_ros.posenet.errors import DatasetError
from geoloc_ros.posenet.synthesis import (
    open_synthetic_views,
    read_synthesis_metadata,
    synthesize_views,
)

if TYPE_CHECKING:
    from geoloc_ros.posenet.train import TrainConfig

logger = logging.getLogger(__name__)

SYNTHETIC_VIEWS_DIR = "synthetic_views"


@dataclass
class PreparedSource:
    """The views to train on, the map frame they are in, and a description for the run summary."""

    source: ViewSource
    map_origin: GeoOrigin | None
    info: dict[str, Any] = field(default_factory=dict)


def training_source(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    map_dir: str | Path | None = None,
    views_dir: str | Path | None = None,
    panoramas_dir: str | Path | None = None,
    synthetic_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
) -> PreparedSource:
    """Open (and, for a bundle with synthesis enabled, render) the training views of a run.

    Exactly one of ``map_dir`` and ``views_dir``. For a new run the run directory is prepared here
    (:func:`~geoloc_ros.posenet.train.prepare_run_dir`; ``overwrite`` deletes an existing run);
    :func:`~geoloc_ros.posenet.train.train` then continues in it.
    """
    from geoloc_ros.posenet.train import prepare_run_dir

    if (map_dir is None) == (views_dir is None):
        raise DatasetError("give exactly one of a map bundle and a view folder")
    from geoloc_ros.mapping.map import MapBundle

    run = Path(run_dir)
    # the input opens before the run directory is made: a wrong --map or --views leaves nothing behind
    if views_dir is not None:
        views = FolderViewSource(views_dir)
        if not resume:
            prepare_run_dir(run, config, overwrite)
        return PreparedSource(views, None, {"views": str(views_dir), "n_views": len(views)})
    bundle = MapBundle.open(map_dir, verify="sizes")  # type: ignore[arg-type]
    if not resume:
        prepare_run_dir(run, config, overwrite)
    sources: list[ViewSource] = []
    info: dict[str, Any] = {
        "map": str(bundle.path),
        "map_id": bundle.bundle_id,
        "origin": bundle.origin.to_dict(),
    }
    if config.data.bundle_views:
        bundle_source = bundle.view_source()
        sources.append(bundle_source)
        info["bundle_views"] = len(bundle_source)
    synthesis = config.data.synthesis
    if synthesis.enabled:
        folder = Path(synthetic_dir) if synthetic_dir is not None else run / SYNTHETIC_VIEWS_DIR
        if synthetic_dir is None and not (folder / "views.jsonl").is_file():
            synthesize_views(
                bundle,
                folder,
                synthesis,
                panorama_dirs=[panoramas_dir] if panoramas_dir is not None else None,
                workers=workers,
                overwrite=True,
            )
        synthetic = open_synthetic_views(folder, synthesis, bundle.origin)
        sources.append(synthetic)
        meta = read_synthesis_metadata(folder)
        info["synthetic_views"] = len(synthetic)
        info["synthesis"] = {
            "folder": str(folder),
            "counts": meta.get("counts"),
            "seconds": meta.get("seconds"),
        }
    if not sources:
        raise DatasetError("data.bundle_views is false and data.synthesis is disabled: no training views")
    source: ViewSource = sources[0] if len(sources) == 1 else ConcatViewSource(sources)
    info["n_views"] = len(source)
    info["camera"] = f"{source.camera.width}x{source.camera.height}"
    logger.info(
        "training views: %s", {k: v for k, v in info.items() if k in ("bundle_views", "synthetic_views")}
    )
    return PreparedSource(source, bundle.origin, info)
