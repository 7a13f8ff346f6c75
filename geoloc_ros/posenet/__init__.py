"""PoseNet: CNN pose regression trained on map views, exported to ONNX, run with onnxruntime.

Modules that need torch (training side): ``backbones``, ``model``, ``losses``, ``train``,
``train_config``, ``feature_cache``, ``checkpoint``, ``export``. Modules free of torch (vehicle
side): ``targets``, ``preprocess``, ``modelinfo``, ``dataset``, ``augment``, ``inference``,
``temporal``. This ``__init__`` imports
nothing, so ``import geoloc_ros.posenet.inference`` never pulls torch in.
"""
