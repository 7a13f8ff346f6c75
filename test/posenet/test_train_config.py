from __future__ import annotations

from pathlib import Path

import pytest

from geoloc_ros.posenet.train_config import TrainConfig


def _shipped_configs(repo_root: Path) -> list[Path]:
    paths = sorted((repo_root / "config" / "posenet").glob("*.yaml"))
    assert paths, "config/posenet/ holds the training recipes"
    return paths


def test_every_shipped_training_recipe_is_a_valid_config(repo_root: Path) -> None:
    for path in _shipped_configs(repo_root):
        config = TrainConfig.load(path)
        assert config.epochs >= 1, path


@pytest.mark.parametrize("section", ["model", "augment", "optim", "loss"])
def test_demo_model_uses_the_standard_recipe(repo_root: Path, section: str) -> None:
    # The shipped demo model is trained by the standard town's recipe (same network, nuisances
    # and optimiser); only the number of views and the schedule may differ.
    demo = TrainConfig.load(repo_root / "config" / "posenet" / "demo.yaml")
    standard = TrainConfig.load(repo_root / "config" / "posenet" / "standard.yaml")
    assert getattr(demo, section) == getattr(standard, section)


def test_demo_continuation_differs_from_demo_only_in_its_schedule(repo_root: Path) -> None:
    # `--init-from` needs the same model and views, and the same augmentation and seed reuse the
    # first stage's feature cache: only the epochs and the optimiser may differ.
    demo = TrainConfig.load(repo_root / "config" / "posenet" / "demo.yaml")
    more = TrainConfig.load(repo_root / "config" / "posenet" / "demo_continue.yaml")
    differing = {k for k in TrainConfig.model_fields if getattr(demo, k) != getattr(more, k)}
    assert differing == {"epochs", "optim"}
    assert more.optim.lr < demo.optim.lr
