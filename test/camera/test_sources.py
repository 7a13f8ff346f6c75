import cv2
import numpy as np
import pytest

from geoloc_ros.camera.sources import FrameSourceError, iter_frames


def test_image_folder_in_name_order(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), np.full((8, 8, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(iter_frames(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [0, 50, 100]


def test_video_file_round_trip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    frames = list(iter_frames(path))
    assert len(frames) == 5 and frames[0].shape == (24, 32, 3)
    looped = iter_frames(path, loop=True)
    assert len([next(looped) for _ in range(12)]) == 12


def test_errors_name_the_source(tmp_path):
    with pytest.raises(FrameSourceError, match="no such video file or image folder"):
        list(iter_frames(tmp_path / "missing.mp4"))
    with pytest.raises(FrameSourceError, match="no images"):
        list(iter_frames(tmp_path))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(FrameSourceError, match=r"bad\.mp4"):
        list(iter_frames(bad))
