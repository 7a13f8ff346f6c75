"""Fuzzing the bag boundary: broken rosbag2 folders and MCAP files are clear :class:`BagError`s
(``geoloc`` exits 2 with one line), never tracebacks or silently wrong data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.io.bag import BagWriter, bag_info, image_message, read_messages, read_raw_messages
from geoloc_ros.io.errors import BagError
from geoloc_ros.io.mcap_crc import verify_mcap

T0 = 1_716_312_600_000_000_000


@pytest.fixture(scope="module")
def sample_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "drive"
    rng = np.random.default_rng(0)
    with BagWriter(path) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        for k in range(20):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            t = T0 + k * 50_000_000
            bag.write("/camera/image_raw", t, image_message(bag.typestore, image, t, "camera_optical"))
    return path


@pytest.fixture
def bag_copy(sample_bag, tmp_path) -> Path:
    copy = tmp_path / "drive"
    shutil.copytree(sample_bag, copy)
    return copy


def _read_everything(path: Path) -> int:
    bag_info(path)
    return sum(1 for _ in read_messages(path)) + sum(1 for _ in read_raw_messages(path))


def test_the_written_bag_carries_crcs_and_reads_back(sample_bag):
    mcap = next(sample_bag.glob("*.mcap"))
    verify_mcap(mcap)
    data = mcap.read_bytes()
    assert data.count(b"\x00\x00\x00\x00") < len(data) // 4  # sanity: a real file
    assert _read_everything(sample_bag) == 40


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_random_bytes_inside_the_mcap_are_detected(bag_copy, fraction):
    mcap = next(bag_copy.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    at = int(fraction * (len(data) - 4096))
    data[at : at + 4096] = np.random.default_rng(at).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    mcap.write_bytes(bytes(data))
    with pytest.raises(BagError, match=r"\.mcap: .*(corrupted|CRC|malformed|runs past|chunk)"):
        _read_everything(bag_copy)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_mcap_is_detected(bag_copy, keep):
    mcap = next(bag_copy.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(keep * len(data))])
    with pytest.raises(BagError, match=r"\.mcap: "):
        _read_everything(bag_copy)


def test_folder_without_metadata_is_a_clear_error(bag_copy):
    (bag_copy / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"drive: not a rosbag2 folder \(metadata\.yaml is missing"):
        bag_info(bag_copy)


@pytest.mark.parametrize("text", ["{not: yaml: at all", "rosbag2_bagfile_information: 3\n", ""])
def test_garbage_metadata_is_a_clear_error(bag_copy, text):
    (bag_copy / "metadata.yaml").write_text(text)
    with pytest.raises(BagError, match=r"drive: cannot open bag"):
        bag_info(bag_copy)


def test_the_cli_reports_a_broken_bag_in_one_line(bag_copy, tmp_path, capsys):
    from geoloc_ros.cli.main import main

    (bag_copy / "metadata.yaml").unlink()
    assert main(["replay", "--bag", str(bag_copy)]) == 2
    err = capsys.readouterr().err
    assert "metadata.yaml is missing" in err and "Traceback" not in err


def test_a_drive_folder_is_read_through_its_bag(sample_bag, tmp_path):
    """``geoloc replay`` and ``geoloc stack --bag`` accept a drive folder as ``localize`` does."""
    drive = tmp_path / "drive_folder"
    drive.mkdir()
    shutil.copytree(sample_bag, drive / "bag")
    assert bag_info(drive).counts == {"/camera/image_raw": 20}
    assert _read_everything(drive) == 40
