"""Where a refined map's panorama error comes from: each bundle's error against the simulator's truth
(split into the set's common shift/turn and the relative error), and, with ``--pairs``, the pose
graph re-solved from a refined bundle's cached pairs under other prior models.

    .venv/bin/python bench/bench_refine_priors.py --truth SIM/panoramas_truth.jsonl MAP [REFINED ...]
    .venv/bin/python bench/bench_refine_priors.py --truth SIM/panoramas_truth.jsonl MAP \\
        --pairs REFINED  # also the prior sweep (solves only: seconds)

The sweep answers whether the priors' weights (``prior_correlation``: the share of the metadata
error modelled as a drift shared by nearby panoramas; ``point_sigma_m``) limit the refined error.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from geoloc_ros.evaluation.maperror import PanoramaPoseErrors, panorama_pose_errors
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.refine_map import RefineConfig, pair_constraints, read_pair_cache, solve_pose_graph


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("maps", nargs="+", type=Path, help="bundles (the first: the unrefined one)")
    parser.add_argument("--truth", type=Path, required=True, help="the simulator's panoramas_truth.jsonl")
    parser.add_argument("--pairs", type=Path, help="a refined bundle of the first map: its pair cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for path in args.maps:
        errors = panorama_pose_errors(MapBundle.open(path, verify="sizes"), args.truth)
        print(path, json.dumps(errors.summary()))
    if args.pairs is None:
        return
    source = MapBundle.open(args.maps[0], verify="sizes")
    base = panorama_pose_errors(source, args.truth)
    pairs = pair_constraints(
        source, RefineConfig(), read_pair_cache(MapBundle.open(args.pairs, verify="sizes"))
    )
    if pairs.computed:
        print(f"warning: {pairs.computed} pairs were not in the cache of {args.pairs} (matched again)")
    records = source.panorama_records
    sigma_m = np.array([r.position_sigma_m or 0.0 for r in records])
    sigma_rad = np.radians([r.heading_sigma_deg or 0.0 for r in records])
    centres = np.asarray(source.panorama_positions)[:, :2]
    print("prior_correlation point_sigma_m | median max relative common (m) | heading median (°) | stated σ")
    for rho in (0.0, 0.36, 0.5, 0.8):
        for point_sigma in (0.15, 0.3):
            cfg = RefineConfig(prior_correlation=rho, point_sigma_m=point_sigma)
            result = solve_pose_graph(
                source.panorama_positions, sigma_m, sigma_rad, pairs.constraints, [], cfg
            )
            moved = centres + result.corrections[:, :2]
            heading = base.heading_deg - np.degrees(result.corrections[:, 2])
            s = PanoramaPoseErrors(
                base.ids, np.linalg.norm(moved - base.true_xy, axis=1), heading, moved, base.true_xy
            ).summary()
            sigma = float(np.median(np.sqrt(result.covariance[:, 0, 0])))
            print(
                f"{rho:4.2f} {point_sigma:4.2f} | {s['position_median_m']:.3f} {s['position_max_m']:.3f} "
                f"{s['relative_median_m']:.3f} {s['common_shift_m']:.3f} | {s['heading_median_deg']:.3f} | "
                f"{sigma:.2f}"
            )


if __name__ == "__main__":
    main()
