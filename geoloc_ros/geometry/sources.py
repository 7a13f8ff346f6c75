"""Names of the estimate sources (``PoseEstimate.source``): the one list of them in the project.

Localizers set ``source`` to one of these; the fusion config keys its per-source settings by them
and the evaluation labels its table columns with them. They live beside
:class:`~geoloc_ros.geometry.estimate.PoseEstimate` so that every package can name a source
without importing the package that produces it.
"""

SOURCE_BOVW = "bovw"
SOURCE_POSENET = "posenet"
SOURCE_POSENET_TEMPORAL = "posenet_temporal"
SOURCE_POSENET_SMOOTHED = "posenet_smoothed"  # offline bidirectional smoothing (evaluation only)
SOURCE_GPS = "gps"
SOURCE_ODOMETRY = "odometry"
SOURCE_IMU = "imu"
SOURCE_FUSED = "fused"
SOURCE_INITIALPOSE = "initialpose"  # an operator's pose (RViz "2D Pose Estimate", /initialpose)

# The order of a report's columns and of the estimates it writes: the seed's two methods first, then
# what we add. Sources not listed follow, by name.
SOURCE_ORDER = (
    SOURCE_BOVW,
    SOURCE_POSENET,
    SOURCE_POSENET_TEMPORAL,
    SOURCE_POSENET_SMOOTHED,
    SOURCE_FUSED,
    SOURCE_GPS,
)
