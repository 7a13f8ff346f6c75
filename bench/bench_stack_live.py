"""Benchmark: does the whole stack keep up with the camera when it runs live in one process?

Replays a simulated drive at camera rate (``--rate 1``) with ``/clock`` into camera ingestion, the
BoVW and PoseNet localizers and fusion, all in one process as ``geoloc stack --bag`` runs them,
and measures what reaches the fused output: camera frames delivered, BoVW poses published and
frames dropped by its newest-frame-only worker, camera-to-pose latency (the pose's arrival minus
its image's arrival at a listener in the same process), fused error against the RTK ground truth,
and the CPU the process used. It runs the stack once per executor in the same process:
``single`` (rclpy SingleThreadedExecutor, what the stack uses: the baseline) and ``multi``
(MultiThreadedExecutor with 4 threads, what it used before).

Run it inside the loopback-only network namespace, like every ROS process of this project::

    .venv/bin/python -m geoloc_ros.nodes.isolation -- .venv/bin/python bench/bench_stack_live.py \\
        --bag out/standard/drive --map out/maps/standard --posenet out/posenet/posenet_standard.onnx
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from renamed_options import parse_args

from geoloc_ros.nodes.isolation import enforce_loopback


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def run_stack(args: argparse.Namespace, executor_kind: str) -> dict[str, float]:
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.nodes.common import reliable_qos, sensor_qos
    from geoloc_ros.nodes.replay import BagReplayNode
    from geoloc_ros.nodes.stack import (
        build_stack,
        destroy_nodes,
        load_parameter_file,
        stack_executor,
        stack_overrides,
    )

    bundle = MapBundle.open(args.map, verify="sizes")
    names, overrides = stack_overrides(
        args.map, bundle.camera, args.posenet, args.bag / "camera_mounting.yaml"
    )

    context = Context()
    rclpy.init(context=context)
    parameters = load_parameter_file(Path(__file__).resolve().parents[1] / "config" / "geoloc.yaml")
    nodes = build_stack(parameters, names, overrides, use_sim_time=True, context=context)
    listener = Node("bench_listener", context=context)
    image_arrival: dict[int, float] = {}
    bovw_arrival: dict[int, float] = {}
    fused: list[PoseWithCovarianceStamped] = []
    listener.create_subscription(
        Image,
        "/camera/image_raw",
        lambda m: image_arrival.setdefault(_stamp_ns(m), time.monotonic()),
        sensor_qos(100),
    )
    listener.create_subscription(
        PoseWithCovarianceStamped,
        "/geoloc/bovw/pose",
        lambda m: bovw_arrival.setdefault(_stamp_ns(m), time.monotonic()),
        reliable_qos(100),
    )
    listener.create_subscription(
        PoseWithCovarianceStamped, "/geoloc/fused/pose", fused.append, reliable_qos(100)
    )
    replay = BagReplayNode(
        context=context,
        parameter_overrides=[
            Parameter("bag", value=str(args.bag / "bag")),
            Parameter("rate", value=args.rate),
            Parameter("start_delay_s", value=2.0),
        ],
    )
    everything = [*nodes, listener, replay]
    if executor_kind == "single":
        executor = stack_executor(everything, context=context)
    else:
        executor = MultiThreadedExecutor(num_threads=4, context=context)
        for node in everything:
            executor.add_node(node)
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        while not replay.done.is_set():
            executor.spin_once(timeout_sec=0.1)
        settle = time.monotonic() + 3.0
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.1)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        bovw_node = next(n for n in nodes if n.get_name() == "bovw_localizer")
        counters, gauges = dict(bovw_node.diagnostics.counters), dict(bovw_node.diagnostics.gauges)
    finally:
        executor.shutdown()
        destroy_nodes([replay, *nodes, listener])
        rclpy.shutdown(context=context)

    gt = np.load(args.bag / "groundtruth.npz")
    stamps = np.array([_stamp_ns(m) for m in fused])
    xy = np.array([[m.pose.pose.position.x, m.pose.pose.position.y] for m in fused]).reshape(-1, 2)
    truth = np.column_stack([np.interp(stamps, gt["stamp_ns"], gt["position_enu"][:, k]) for k in (0, 1)])
    errors = np.linalg.norm(xy - truth, axis=1) if fused else np.array([np.nan])
    latencies = [1000 * (t - image_arrival[s]) for s, t in bovw_arrival.items() if s in image_arrival]
    return {
        "frames": len(gt["stamp_ns"]),
        "images_delivered": len(image_arrival),
        "bovw_received": counters.get("frames_received", 0),
        "bovw_dropped": float(gauges.get("frames_dropped", 0)),
        "bovw_poses": len(bovw_arrival),
        "bovw_latency_median_ms": float(np.median(latencies)) if latencies else float("nan"),
        "bovw_latency_p95_ms": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "fused_poses": len(fused),
        "fused_median_m": float(np.median(errors)),
        "fused_within_1m": float(np.mean(errors < 1.0)),
        "cores_used": cpu / wall,
    }


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bag", type=Path, required=True, help="simulated drive directory (bag + groundtruth.npz)"
    )
    parser.add_argument("--map", type=Path, required=True, help="map bundle of the drive's town")
    parser.add_argument(
        "--posenet", type=Path, default=None, help="PoseNet .onnx (omit: no PoseNet localizer)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed (1 = camera rate)")
    parser.add_argument("--executors", default="single,multi", help="comma-separated: single, multi")
    args = parse_args(parser)
    enforce_loopback()

    results = {kind: run_stack(args, kind) for kind in args.executors.split(",")}
    keys = next(iter(results.values())).keys()
    kinds = list(results)
    print("| metric | " + " | ".join(kinds) + " |")
    print("| --- |" + " --- |" * len(kinds))
    for key in keys:
        print(f"| {key} | " + " | ".join(_format(results[k][key]) for k in kinds) + " |")


if __name__ == "__main__":
    main()
