"""rosbag2 helpers: write with BagWriter, read back with rosbags' AnyReader and read_messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.io.bag import (
    BagWriter,
    bag_info,
    camera_info_message,
    compressed_image_message,
    get_typestore,
    image_message,
    imu_message,
    navsatfix_message,
    read_messages,
    stamp_fields,
    stamp_to_ns,
)
from geoloc_ros.io.errors import BagError
from geoloc_ros.io.images import compressed_msg_to_array, image_msg_to_array

T0 = 1_716_312_600_000_000_000


def _write_sample(path: Path, storage: str) -> np.ndarray:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    camera = PinholeCamera(640, 480, 580.0, 581.0, 322.0, 238.0, "plumb_bob", (-0.1, 0.02, 0.0, 0.0, 0.0))
    with BagWriter(path, storage=storage) as bag:  # type: ignore[arg-type]
        store = bag.typestore
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
        bag.add_topic("/camera/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
        bag.add_topic("/rtk/imu", "sensor_msgs/msg/Imu")
        for k in range(5):
            t = T0 + k * 50_000_000
            bag.write(
                "/rtk/fix",
                t,
                navsatfix_message(
                    store, t, "rtk_antenna", 48.85 + k * 1e-6, 2.35, 37.0, np.diag([4e-4, 4e-4, 9e-4])
                ),
            )
            bag.write(
                "/rtk/imu",
                t,
                imu_message(
                    store,
                    t,
                    "base_link",
                    [0.0, 0.0, 0.3826834, 0.9238795],
                    1e-6,
                    [0.0, 0.0, 0.1],
                    [0.0, 0.0, 9.81],
                ),
            )
            bag.write("/camera/image_raw", t, image_message(store, image, t, "camera_optical"))
            bag.write(
                "/camera/image_raw/compressed",
                t,
                compressed_image_message(store, image, t, "camera_optical", "png"),
            )
            bag.write("/camera/camera_info", t, camera_info_message(store, camera, t, "camera_optical"))
    return image


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bag_opens_with_anyreader_and_every_message_deserializes(
    tmp_path: Path, storage: str
) -> None:
    path = tmp_path / "bag"
    image = _write_sample(path, storage)
    with AnyReader([path], default_typestore=get_typestore()) as reader:
        count = 0
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
            count += 1
    assert count == 25
    info = bag_info(path)
    assert info.counts == {
        "/camera/image_raw": 5,
        "/camera/image_raw/compressed": 5,
        "/camera/camera_info": 5,
        "/rtk/fix": 5,
        "/rtk/imu": 5,
    }
    assert info.start_ns == T0 and info.end_ns >= T0 + 200_000_000
    messages = list(
        read_messages(
            path,
            [
                "/camera/image_raw",
                "/camera/image_raw/compressed",
                "/rtk/fix",
                "/camera/camera_info",
                "/rtk/imu",
            ],
        )
    )
    stamps = [m.log_time_ns for m in messages]
    assert stamps == sorted(stamps)
    assert all(m.stamp_ns == m.log_time_ns for m in messages)
    raw = [m for m in messages if m.topic == "/camera/image_raw"]
    assert np.array_equal(image_msg_to_array(raw[0].msg), image)
    compressed = [m for m in messages if m.topic.endswith("compressed")]
    assert np.array_equal(compressed_msg_to_array(compressed[0].msg), image)
    info_msg = next(m for m in messages if m.topic == "/camera/camera_info").msg
    assert PinholeCamera.from_camera_info(info_msg) == PinholeCamera(
        640, 480, 580.0, 581.0, 322.0, 238.0, "plumb_bob", (-0.1, 0.02, 0.0, 0.0, 0.0)
    )
    fix = next(m for m in messages if m.topic == "/rtk/fix").msg
    assert fix.header.frame_id == "rtk_antenna" and fix.latitude == pytest.approx(48.85)
    assert fix.position_covariance[0] == pytest.approx(4e-4) and fix.position_covariance_type == 2
    imu = next(m for m in messages if m.topic == "/rtk/imu").msg
    assert imu.orientation.z == pytest.approx(0.3826834) and imu.angular_velocity_covariance[0] == 0.0


def test_reader_filters_topics_and_time_and_names_missing_topics(tmp_path: Path) -> None:
    path = tmp_path / "bag"
    _write_sample(path, "mcap")
    fixes = list(read_messages(path, ["/rtk/fix"], start_ns=T0 + 50_000_000, stop_ns=T0 + 150_000_000))
    assert [m.stamp_ns for m in fixes] == [T0 + 50_000_000, T0 + 100_000_000]
    with pytest.raises(BagError, match="/gps/fix") as info:
        list(read_messages(path, ["/gps/fix"]))
    assert "/rtk/fix" in str(info.value)
    with pytest.raises(BagError, match="not found"):
        list(read_messages(tmp_path / "missing", ["/rtk/fix"]))


def test_writer_refuses_existing_path_unknown_topics_and_time_going_back(tmp_path: Path) -> None:
    path = tmp_path / "bag"
    path.mkdir()
    with pytest.raises(BagError, match="already exists"):
        BagWriter(path)
    with pytest.raises(BagError, match="storage"):
        BagWriter(tmp_path / "other", storage="rosbag1")  # type: ignore[arg-type]
    with BagWriter(tmp_path / "b2") as bag:
        bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
        msg = navsatfix_message(bag.typestore, T0, "rtk", 1.0, 2.0, 3.0)
        with pytest.raises(BagError, match="not declared"):
            bag.write("/gps/fix", T0, msg)
        bag.write("/rtk/fix", T0, msg)
        with pytest.raises(BagError, match="earlier"):
            bag.write("/rtk/fix", T0 - 1, msg)
        with pytest.raises(BagError, match="declared twice"):
            bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
        with pytest.raises(BagError, match="not in the typestore"):
            bag.add_topic("/x", "nope_msgs/msg/Nope")


def test_failed_write_leaves_no_partial_bag(tmp_path: Path) -> None:
    path = tmp_path / "bag"
    with pytest.raises(RuntimeError), BagWriter(path) as bag:
        bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
        bag.write("/rtk/fix", T0, navsatfix_message(bag.typestore, T0, "rtk", 1.0, 2.0, 3.0))
        raise RuntimeError("interrupted")
    assert not path.exists()


def test_stamp_conversions() -> None:
    assert stamp_fields(T0 + 123) == (T0 // 1_000_000_000, 123)
    store = get_typestore("jazzy")
    msg = navsatfix_message(store, T0 + 7, "gps", 0.0, 0.0, 0.0)
    assert stamp_to_ns(msg.header.stamp) == T0 + 7
    with pytest.raises(BagError, match="non-negative"):
        stamp_fields(-1)
    with pytest.raises(BagError, match="distribution"):
        get_typestore("noetic")  # type: ignore[arg-type]
