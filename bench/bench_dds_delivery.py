"""Benchmark: how many camera frames cross a process boundary, as ``ros2 launch`` runs the nodes?

Starts ``camera_ingest`` as its own process, publishing a folder of synthetic ``WIDTHxHEIGHT``
frames at ``--rate`` Hz (its ``source`` mode: rectified bgr8 ``Image`` on
``/geoloc/camera/image_rect``, sensor-data QoS), and a second process that subscribes to it with
the BoVW localizer's QoS (best effort, keep last 1) and counts the distinct frames received.
Delivery = frames received / frames published between the first and the last frame received (each
frame carries its index in its first two pixels), so the seconds discovery takes before the two
processes match are not counted as losses. ``--profile`` runs both with the shipped Fast DDS
profile (config/fastdds.xml), ``--no-profile`` with the middleware defaults.

Run it inside the loopback-only network namespace, like every ROS process of this project::

    .venv/bin/python -m geoloc_ros.nodes.isolation -- .venv/bin/python bench/bench_dds_delivery.py \\
        --size 640x480 --size 1280x720 --frames 100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds.xml"


def dds_environment(profile: bool) -> dict[str, str]:
    """The environment of both processes: loopback-only discovery, with or without the profile."""
    from geoloc_ros.nodes.isolation import enforce_loopback

    env = dict(os.environ)
    enforce_loopback(env, force=False)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    return env


def subscribe(count_file: Path, idle_s: float, timeout_s: float) -> None:
    """The subscriber process: count distinct frames until ``idle_s`` without one, a ``.stop`` file
    beside ``count_file``, or ``timeout_s``."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from geoloc_ros.nodes.common import sensor_qos

    rclpy.init()
    node = Node("dds_delivery_listener")
    indices: set[int] = set()
    last = [time.monotonic()]

    def on_image(msg: Image) -> None:
        indices.add(int(msg.data[0]) + 256 * int(msg.data[3]))  # pixels 0 and 1, blue channel
        last[0] = time.monotonic()

    node.create_subscription(Image, "/geoloc/camera/image_rect", on_image, sensor_qos(1))
    stop_file = count_file.with_suffix(".stop")
    count_file.write_text("ready")
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        rclpy.spin_once(node, timeout_sec=0.05)
        if (indices and time.monotonic() - last[0] > idle_s) or stop_file.exists():
            break
    ordered = sorted(indices)
    summary = {"received": len(ordered), "first": ordered[:1], "last": ordered[-1:]}
    count_file.write_text(json.dumps(summary))
    node.destroy_node()
    rclpy.shutdown()


def measure(width: int, height: int, rate_hz: float, frames: int, profile: bool) -> dict[str, float]:
    """Publish ``frames`` frames from one process, count them in another; returns the figures."""
    from geoloc_ros.camera.pinhole import PinholeCamera

    with tempfile.TemporaryDirectory(prefix="dds_delivery_") as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        rng = np.random.default_rng(0)
        for k in range(frames):
            image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            image[0, 0, 0], image[0, 1, 0] = k % 256, k // 256  # the frame's index
            cv2.imwrite(str(folder / f"{k:05d}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        camera_yaml = Path(tmp) / "camera.yaml"
        camera_yaml.write_text(yaml.safe_dump(PinholeCamera.from_hfov(width, height, 60.0).to_dict()))
        count_file = Path(tmp) / "count"
        env = dds_environment(profile)
        listener = subprocess.Popen(
            [sys.executable, __file__, "--subscribe", str(count_file)], env=env, cwd=REPO
        )
        try:
            deadline = time.monotonic() + 60
            while not count_file.exists() or count_file.read_text() != "ready":
                if time.monotonic() > deadline or listener.poll() is not None:
                    raise RuntimeError("the listener did not start")
                time.sleep(0.1)
            publisher = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "geoloc_ros.nodes.camera_ingest",
                    "--ros-args",
                    "-p",
                    f"source:={folder}",
                    "-p",
                    f"camera_yaml:={camera_yaml}",
                    "-p",
                    f"source_rate_hz:={rate_hz}",
                    "--log-level",
                    "warn",
                ],
                env=env,
                cwd=REPO,
            )
            try:
                # The publisher streams for frames / rate seconds after its start-up; then stop.
                deadline = time.monotonic() + 30 + frames / rate_hz
                while listener.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                count_file.with_suffix(".stop").touch()
                listener.wait(timeout=30)
            finally:
                publisher.terminate()
                publisher.wait(timeout=30)
        finally:
            if listener.poll() is None:
                listener.kill()
        counts = json.loads(count_file.read_text())
    received = int(counts["received"])
    expected = counts["last"][0] - counts["first"][0] + 1 if received else 0
    return {
        "width": width,
        "height": height,
        "rate_hz": rate_hz,
        "frames_published": frames,
        "received": received,
        "expected": expected,
        "delivery": received / expected if expected else 0.0,
        "profile": profile,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", action="append", default=None, help="WIDTHxHEIGHT (repeatable)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--subscribe", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe is not None:
        subscribe(args.subscribe, idle_s=3.0, timeout_s=300.0)
        return 0
    results = []
    for size in args.size or ["640x480"]:
        width, height = (int(v) for v in size.split("x"))
        results.append(measure(width, height, args.rate, args.frames, args.profile))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(
                f"{r['width']}x{r['height']} at {r['rate_hz']:g} Hz, profile {r['profile']}: "
                f"{r['received']}/{r['expected']} frames ({100 * r['delivery']:.1f} %)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
