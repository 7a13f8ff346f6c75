"""geoloc_ros: visual ego-localization of vehicles against geo-tagged street-level panoramas.

Everything outside :mod:`geoloc_ros.nodes` and :mod:`geoloc_ros.cli` is the ROS-free core: plain
Python with numpy/OpenCV/faiss/onnxruntime, importable and testable without rclpy.
"""

__version__ = "0.1.0"
