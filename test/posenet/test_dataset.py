from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.posenet.dataset import (
    ArrayViewSource,
    FolderViewSource,
    ViewSource,
    split_by_group,
    write_view_folder,
)
from geoloc_ros.posenet.errors import DatasetError


def test_split_by_group_holds_out_whole_locations() -> None:
    groups = [f"pano_{i // 5}" for i in range(60)]  # 12 groups of 5 views
    split = split_by_group(groups, 0.25, seed=3)
    train_groups = {groups[i] for i in split.train_indices}
    val_groups = {groups[i] for i in split.val_indices}
    assert not train_groups & val_groups
    assert len(val_groups) == 3 and len(train_groups) == 9
    assert sorted(np.concatenate([split.train_indices, split.val_indices]).tolist()) == list(range(60))
    assert split_by_group(groups, 0.25, seed=3).val_groups == split.val_groups
    assert split_by_group(groups, 0.25, seed=4).val_groups != split.val_groups
    assert len(split_by_group(groups, 0.0, seed=3).val_indices) == 0
    # Never everything in validation.
    assert len(split_by_group(["a", "a", "b"], 0.9, seed=0).train_groups) == 1
    with pytest.raises(DatasetError, match="val_fraction"):
        split_by_group(groups, 1.0, seed=0)


def test_array_source_validates_inputs() -> None:
    camera = PinholeCamera.from_hfov(8, 6, 60.0)
    images = np.zeros((2, 6, 8, 3), np.uint8)
    poses = [Pose3D.identity(), Pose3D.identity()]
    source = ArrayViewSource(images, poses, ["a", "b"], camera)
    assert isinstance(source, ViewSource)
    assert len(source) == 2 and source.group(1) == "b"
    with pytest.raises(DatasetError, match="2 images but 1 poses"):
        ArrayViewSource(images, poses[:1], ["a", "b"], camera)
    with pytest.raises(DatasetError, match="view 0: image shape"):
        ArrayViewSource(np.zeros((2, 5, 8, 3), np.uint8), poses, ["a", "b"], camera)
    with pytest.raises(DatasetError, match="uint8"):
        ArrayViewSource(images.astype(float), poses, ["a", "b"], camera)


def test_view_folder_roundtrip(tmp_path: Path, synthetic_views) -> None:
    source = synthetic_views(n_groups=2, views_per_group=3, width=32, height=24)
    folder = write_view_folder(source, tmp_path / "views")
    loaded = FolderViewSource(folder)
    assert len(loaded) == 6 and loaded.camera == source.camera
    for i in range(6):
        np.testing.assert_array_equal(loaded.image(i), source.image(i))
        np.testing.assert_allclose(loaded.pose(i).as_matrix(), source.pose(i).as_matrix(), atol=1e-9)
        assert loaded.group(i) == source.group(i)


def test_view_folder_errors_name_file_and_line(tmp_path: Path, synthetic_views) -> None:
    folder = write_view_folder(
        synthetic_views(n_groups=1, views_per_group=2, width=32, height=24), tmp_path / "v"
    )
    lines = (folder / "views.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    record["quaternion"] = [0, 0, 0]
    (folder / "views.jsonl").write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=r"views\.jsonl:2: quaternion"):
        FolderViewSource(folder)
    record["quaternion"] = [0, 0, 0, 1]
    record["image"] = "images/missing.png"
    (folder / "views.jsonl").write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DatasetError, match=r"missing\.png: cannot read image"):
        FolderViewSource(folder).image(1)
    with pytest.raises(DatasetError, match="view list not found"):
        FolderViewSource(tmp_path)


def test_concat_source_resamples_views_onto_a_common_camera() -> None:
    from geoloc_ros.posenet.dataset import ConcatViewSource, same_camera_up_to_scale

    big = PinholeCamera.from_hfov(64, 48, 60.0)
    small = big.scaled(0.5)
    assert same_camera_up_to_scale(big, small)
    other = PinholeCamera.from_hfov(64, 48, 70.0)
    assert not same_camera_up_to_scale(big, other)
    pose = Pose3D.from_xyz_ypr([1.0, 2.0, 3.0], 0.5)
    a = ArrayViewSource(np.full((2, 48, 64, 3), 200, np.uint8), [pose, pose], ["a", "b"], big)
    b = ArrayViewSource(np.full((3, 24, 32, 3), 50, np.uint8), [pose] * 3, ["b", "c", "c"], small)
    both = ConcatViewSource([a, b])
    assert isinstance(both, ViewSource)
    assert len(both) == 5 and both.camera == small
    assert [both.group(i) for i in range(5)] == ["a", "b", "b", "c", "c"]
    assert both.image(0).shape == (24, 32, 3) and int(both.image(0)[0, 0, 0]) == 200
    assert int(both.image(4)[0, 0, 0]) == 50
    assert both.pose(3) is pose
    with pytest.raises(IndexError):
        both.image(5)
    upscaled = ConcatViewSource([a, b], camera=big)
    assert upscaled.image(2).shape == (48, 64, 3)
    with pytest.raises(DatasetError, match="up to scale"):
        ConcatViewSource([a, ArrayViewSource(np.zeros((1, 48, 64, 3), np.uint8), [pose], ["x"], other)])
    with pytest.raises(DatasetError, match="at least one"):
        ConcatViewSource([])
