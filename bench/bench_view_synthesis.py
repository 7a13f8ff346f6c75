"""Benchmark: rectified + virtual view synthesis per panorama (the map builder's GIS stage).

Renders one simulator panorama (tiny town, 4096x2048 by default) and times
:func:`geoloc_ros.gis.virtual.synthesize_panorama_views` with the default configuration
(12 yaws, offsets -4/+4 m, 640x480 views at 57.6° HFOV: up to 36 views). Prints the median time
per panorama, its split into rectified and virtual views (the rectified-only run is the baseline
measured in the same process), and the projection to a 30-panorama set on one and two cores.

    .venv/bin/python bench/bench_view_synthesis.py [--width 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from geoloc_ros.geo.heading import enu_yaw_to_compass
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.views import ViewSynthesisConfig
from geoloc_ros.gis.virtual import hole_ratio_table, street_axis, synthesize_panorama_views
from geoloc_ros.sim.render import Conditions, render_panorama
from geoloc_ros.sim.scenario import preset
from geoloc_ros.sim.town import build_town


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096, help="panorama width in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    town = build_town(preset("tiny"), 0)
    street = town.network.streets[0]
    xy, tangent = street.point_at(street.length / 2.0)
    position = np.array([xy[0], xy[1], 2.5])
    along = np.array([tangent[0], tangent[1], 0.0])
    heading = float(enu_yaw_to_compass(math.atan2(tangent[1], tangent[0])))
    conditions = Conditions(
        sun_direction=(0.0, -0.5, math.sqrt(0.75)),
        sun_bgr=(0.45, 0.45, 0.45),
        ambient_bgr=(0.7, 0.7, 0.7),
        cloud_cover=0.0,
    )
    pose = panorama_body_pose(position, heading)
    start = time.perf_counter()
    image, ranges = render_panorama(town, pose, args.width, conditions)
    elapsed = time.perf_counter() - start
    print(f"panorama {args.width}x{args.width // 2} rendered by the simulator in {elapsed:.1f} s")

    config = ViewSynthesisConfig()
    rectified_only = config.model_copy(update={"virtual_offsets_m": ()})
    camera = config.camera.pinhole()
    axis = street_axis(
        position, heading, linked_positions=np.array([position + 12 * along, position - 12 * along])
    )

    def run(cfg: ViewSynthesisConfig) -> tuple[float, int, list]:
        t0 = time.perf_counter()
        result = synthesize_panorama_views(
            "bench", image, ranges, pose, heading_deg=heading, config=cfg, camera=camera, axis=axis
        )
        return time.perf_counter() - t0, len(result.views), [result]

    run(rectified_only)  # warm the sampling-map caches, as a multi-panorama build would
    base = [run(rectified_only)[0] for _ in range(args.repeats)]
    full_runs = [run(config) for _ in range(args.repeats)]
    full = [t for t, _, _ in full_runs]
    kept = full_runs[0][1]
    base_med, full_med = statistics.median(base), statistics.median(full)
    print(f"rectified views only (12 views): median {base_med:.2f} s per panorama")
    print(
        f"rectified + virtual ({kept} views kept of 36): median {full_med:.2f} s per panorama "
        f"(ratio to rectified-only: {full_med / base_med:.1f}x)"
    )
    print(f"virtual views: median {(full_med - base_med) / 24 * 1000:.0f} ms per view")
    print(f"30 panoramas: {30 * full_med:.0f} s on one core, ~{15 * full_med:.0f} s on two workers")
    for row in hole_ratio_table(full_runs[0][2]):
        print(
            f"offset {row.offset_m:+.0f} m: {row.views} views, "
            f"mean null-pixel ratio {row.mean_hole_ratio:.3f}, "
            f"{row.views_with_null_pixels} with null pixels, {row.discarded} discarded"
        )


if __name__ == "__main__":
    main()
