"""The image localizers' shared base: which frames reach the localizer."""

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def test_duplicate_and_reordered_frames_are_skipped_a_bag_loop_is_not(ros_context, echo_localizer):
    """A frame stamped at or a little before the last one localized (a duplicate, a reordered
    message) would restart tracking (BoVW searches the whole map, PoseNet's temporal filter starts
    over): it is skipped and counted. A jump far back is a bag loop and goes through."""
    from geoloc_ros.geometry.estimate import PoseEstimate
    from geoloc_ros.nodes.localizer_base import Frame

    seen = []

    def localize(image, camera, stamp_ns):
        seen.append(stamp_ns // 10**8)
        return [PoseEstimate.planar(stamp_ns, 1.0, 2.0, 0.0, np.eye(3))]

    node = echo_localizer("order_localizer", "/order/pose", localize, context=ros_context)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    try:
        for tenths in (100, 110, 110, 105, 120, 100, 10, 11):  # seconds x 10; 1.0 s is a loop
            node._process(Frame(tenths * 10**8, image, None, 0.0))
        assert seen == [100, 110, 120, 10, 11]
        # 2 s back exactly (MAX_REORDER_NS) is still a reordered frame, as the BoVW core refuses it.
        assert node.diagnostics.counters["frames_out_of_order"] == 3
    finally:
        node.close()
        node.destroy_node()
