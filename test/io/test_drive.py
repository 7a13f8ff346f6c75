"""Reading a simulated drive back as core types."""

import numpy as np
import pytest

from geoloc_ros.geo import geodetic_to_enu
from geoloc_ros.gis.panorama_set import PanoramaSet
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.errors import BagError


def test_tiny_drive_reads_back(tiny_sim_dir):
    drive = DriveBag(tiny_sim_dir / "drive")
    assert drive.n_frames > 10
    assert drive.camera.is_distorted  # the simulated lens, declared in CameraInfo
    assert drive.mounting.translation[0] > 0  # camera ahead of the antenna
    stamps = drive.frame_stamps()
    assert len(stamps) == drive.n_frames and np.all(np.diff(stamps) > 0)
    frames = list(drive.frames(stride=10))
    assert frames[0].image.shape == (drive.camera.height, drive.camera.width, 3)
    assert [f.stamp_ns for f in frames] == list(stamps[::10])
    rtk = drive.rtk()
    gt = np.load(tiny_sim_dir / "drive" / "groundtruth.npz")
    origin = PanoramaSet.load(tiny_sim_dir / "panoramas").origin
    enu = geodetic_to_enu(rtk.latitude_deg, rtk.longitude_deg, rtk.altitude_m, origin)
    truth = np.array([np.interp(rtk.stamps_ns, gt["stamp_ns"], gt["position_enu"][:, k]) for k in range(3)]).T
    assert np.median(np.linalg.norm(enu[:, :2] - truth[:, :2], axis=1)) < 0.1  # RTK: centimetre noise
    gps = drive.gps()
    assert gps is not None and len(gps) > 0
    orientation = drive.rtk_orientation()
    assert orientation is not None and orientation.quaternions_xyzw.shape[1] == 4


def test_not_a_drive(tmp_path):
    with pytest.raises(BagError, match="neither a rosbag2 directory"):
        DriveBag(tmp_path)
