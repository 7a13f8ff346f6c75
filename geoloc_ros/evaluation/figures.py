"""Report figures as PNG bytes (matplotlib's Agg canvas; no display, no global backend switch).

- :func:`plot_map`: one panel per source, the ``map`` plane (ENU metres) with the ground truth in
  green, the source's estimates in red and the panoramas as blue triangles.
- :func:`plot_error_over_time`: position and heading error against time, one colour per source.
- :func:`plot_error_cdf`: cumulative distribution of the position error (over evaluated frames
  and over all frames, so continuity shows as the curve's plateau) and of the heading error.
- :func:`plot_error_sigma`: one row per source, the cross-track and along-track error against
  time inside the source's own +-3 sigma (its published covariance projected on that axis): points
  outside the band are overconfident estimates.
- :func:`plot_error_map`: one panel per source, the estimates in the ``map`` plane coloured by
  their position error (one colour scale for all panels), over the ground truth.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from geoloc_ros.evaluation.groundtruth import GroundTruth
from geoloc_ros.evaluation.metrics import NOT_ESTIMATED_VARIANCE, SourceEvaluation, track_errors
from geoloc_ros.evaluation.tables import display_name

GROUND_TRUTH_COLOUR = "tab:green"
ESTIMATE_COLOUR = "tab:red"
PANORAMA_COLOUR = "tab:blue"
_DPI = 110


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def plot_map(
    ground_truth: GroundTruth,
    evaluations: Mapping[str, SourceEvaluation],
    panoramas_xy: npt.ArrayLike | None = None,
) -> bytes:
    """Trajectories in the ``map`` plane, one panel per source."""
    names = list(evaluations) or ["(no estimates)"]
    panoramas = None if panoramas_xy is None else np.asarray(panoramas_xy, dtype=float).reshape(-1, 2)
    gt = ground_truth.positions
    # The view frames the ground truth and the panoramas: a wild estimate must not shrink the map
    # to a dot (estimates outside the view are counted in the panel title instead).
    extent = gt[:, :2] if panoramas is None else np.concatenate([gt[:, :2], panoramas])
    low, high = extent.min(axis=0), extent.max(axis=0)
    margin = 0.08 * float((high - low).max()) + 10.0
    low, high = low - margin, high + margin
    aspect = float(np.clip((high[1] - low[1]) / (high[0] - low[0]), 0.4, 2.5))
    columns = min(4 if aspect > 1.5 else 3, len(names))
    rows = math.ceil(len(names) / columns)
    panel_width = 5.0 if aspect <= 1.5 else 3.6
    figure = Figure(
        figsize=(panel_width * columns, (panel_width * aspect + 0.6) * rows + 0.5), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        ax.plot(gt[:, 0], gt[:, 1], color=GROUND_TRUTH_COLOUR, linewidth=1.5, label="ground truth (RTK)")
        if panoramas is not None and panoramas.size:
            ax.scatter(
                panoramas[:, 0], panoramas[:, 1], marker="^", s=22, color=PANORAMA_COLOUR, label="panoramas"
            )
        evaluation = evaluations.get(name)
        title = display_name(name)
        if evaluation is not None and len(evaluation.associated):
            est = evaluation.associated.positions
            ax.scatter(est[:, 0], est[:, 1], s=3, color=ESTIMATE_COLOUR, label="estimates", zorder=3)
            title += f" ({evaluation.metrics.n_localized}/{evaluation.metrics.n_frames} frames"
            outside = int(np.count_nonzero(np.any((est[:, :2] < low) | (est[:, :2] > high), axis=1)))
            title += f", {outside} outside the view)" if outside else ")"
        ax.set_title(title, fontsize="medium")
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal", adjustable="box")
        ax.grid(True, alpha=0.3)
        if k % columns == 0:
            ax.set_ylabel("north (m)")
        if k >= (rows - 1) * columns:
            ax.set_xlabel("east (m)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(
        handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small", markerscale=2
    )
    return _png(figure)


def _seconds(stamps_ns: np.ndarray, start_ns: int) -> np.ndarray:
    return (stamps_ns - start_ns).astype(float) * 1e-9


def plot_error_over_time(ground_truth: GroundTruth, evaluations: Mapping[str, SourceEvaluation]) -> bytes:
    """Position (top) and heading (bottom) error of every source against drive time."""
    figure = Figure(figsize=(11.0, 6.5))
    position_ax, heading_ax = figure.subplots(2, 1, sharex=True)
    start = ground_truth.span_ns[0]
    for name, evaluation in evaluations.items():
        a = evaluation.associated
        ok = a.evaluated
        t = _seconds(a.stamps_ns[ok], start)
        position_ax.plot(t, a.position_error_2d[ok], ".", markersize=2.5, label=display_name(name))
        heading = np.degrees(a.heading_error[ok])
        has = np.isfinite(heading)
        if has.any():
            heading_ax.plot(t[has], heading[has], ".", markersize=2.5, label=display_name(name))
    position_ax.set_ylabel("position error (m)")
    heading_ax.set_ylabel("heading error (deg)")
    heading_ax.set_xlabel("time since the first ground-truth fix (s)")
    for ax in (position_ax, heading_ax):
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    if evaluations:
        position_ax.legend(loc="upper right", fontsize="small", markerscale=4)
    return _png(figure)


def _cdf(values: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    return x, np.arange(1, x.size + 1) / max(total, 1)


def plot_error_cdf(evaluations: Mapping[str, SourceEvaluation]) -> bytes:
    """CDFs of the position error (evaluated frames; all frames) and of the heading error."""
    figure = Figure(figsize=(15.0, 4.6))
    localized_ax, frames_ax, heading_ax = figure.subplots(1, 3)
    for name, evaluation in evaluations.items():
        a, m = evaluation.associated, evaluation.metrics
        err = a.position_error_2d[a.evaluated]
        if err.size:
            localized_ax.step(*_cdf(err, err.size), where="post", label=display_name(name))
            frames_ax.step(*_cdf(err, m.n_frames), where="post", label=display_name(name))
        heading = np.degrees(a.heading_error[a.evaluated])
        heading = heading[np.isfinite(heading)]
        if heading.size:
            heading_ax.step(*_cdf(heading, heading.size), where="post", label=display_name(name))
    localized_ax.set_title("position error, share of evaluated frames")
    frames_ax.set_title("position error, share of all frames")
    heading_ax.set_title("heading error, share of frames with heading")
    for ax, unit in ((localized_ax, "m"), (frames_ax, "m"), (heading_ax, "deg")):
        ax.set_xscale("log")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel(f"error ({unit})")
        ax.grid(True, which="both", alpha=0.3)
    localized_ax.set_ylabel("cumulative share")
    for x in (1.0, 2.0):
        localized_ax.axvline(x, color="grey", linewidth=0.8, linestyle="--")
        frames_ax.axvline(x, color="grey", linewidth=0.8, linestyle="--")
    if evaluations:
        localized_ax.legend(loc="lower right", fontsize="small")
    return _png(figure)


def plot_error_sigma(ground_truth: GroundTruth, evaluations: Mapping[str, SourceEvaluation]) -> bytes:
    """Cross-track (left) and along-track (right) error with the source's own +-3 sigma, per source."""
    names = list(evaluations) or ["(no estimates)"]
    figure = Figure(figsize=(13.0, 2.4 * len(names) + 0.8), layout="constrained")
    axes = figure.subplots(len(names), 2, squeeze=False, sharex=True)
    start = ground_truth.span_ns[0]
    for row, name in enumerate(names):
        cross_ax, along_ax = axes[row]
        evaluation = evaluations.get(name)
        cross_ax.set_ylabel(f"{display_name(name)}\nerror (m)")
        if evaluation is None:
            continue
        a = evaluation.associated
        ok = a.evaluated & np.isfinite(a.truth.yaw)
        t = _seconds(a.stamps_ns[ok], start)
        heading = a.truth.yaw[ok]
        along, cross = track_errors(a.positions[ok, :2] - a.truth.positions[ok, :2], heading)
        cov = a.planar_covariance[ok][:, :2, :2]
        c, s = np.cos(heading), np.sin(heading)
        axes_dirs = {"cross": np.stack([-s, c], axis=1), "along": np.stack([c, s], axis=1)}
        for ax, key, error in ((cross_ax, "cross", cross), (along_ax, "along", along)):
            d = axes_dirs[key]
            variance = np.einsum("ni,nij,nj->n", d, cov, d)
            sigma = np.where(variance < NOT_ESTIMATED_VARIANCE, np.sqrt(np.clip(variance, 0.0, None)), np.nan)
            order = np.argsort(t)
            ax.fill_between(
                t[order],
                -3 * sigma[order],
                3 * sigma[order],
                color="tab:blue",
                alpha=0.25,
                linewidth=0,
                label="±3σ (published covariance)",
            )
            outside = np.abs(error) > 3 * sigma
            ax.plot(
                t[~outside], error[~outside], ".", color="black", markersize=2.5, label="error inside ±3σ"
            )
            ax.plot(
                t[outside],
                error[outside],
                ".",
                color=ESTIMATE_COLOUR,
                markersize=3.5,
                label="error outside ±3σ",
            )
            known = np.isfinite(sigma)
            share = (
                f"{100.0 * np.count_nonzero(outside) / max(int(known.sum()), 1):.1f}% outside"
                if known.any()
                else "no covariance"
            )
            ax.set_title(f"{display_name(name)}: {key}-track ({share})", fontsize="medium")
            # Frame the band and the bulk of the errors; a few wild estimates must not flatten it.
            values = np.concatenate([np.abs(error), 3 * sigma[known]])
            limit = float(np.percentile(values, 98)) * 1.2 if values.size else 1.0
            ax.set_ylim(-max(limit, 0.5), max(limit, 0.5))
            ax.axhline(0.0, color="grey", linewidth=0.8)
            ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(axes[0, 0].get_title() or "cross-track", fontsize="medium")
    for ax in axes[-1]:
        ax.set_xlabel("time since the first ground-truth fix (s)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        figure.legend(
            handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small", markerscale=3
        )
    figure.suptitle(
        "Error against the source's own ±3σ (cross-track positive left, along-track positive ahead)"
    )
    return _png(figure)


ERROR_COLOUR_LIMIT_M = 5.0


def plot_error_map(ground_truth: GroundTruth, evaluations: Mapping[str, SourceEvaluation]) -> bytes:
    """The estimates in the ``map`` plane coloured by their position error, one panel per source."""
    names = list(evaluations) or ["(no estimates)"]
    gt = ground_truth.positions
    low, high = gt[:, :2].min(axis=0), gt[:, :2].max(axis=0)
    margin = 0.05 * float((high - low).max()) + 5.0
    low, high = low - margin, high + margin
    aspect = float(np.clip((high[1] - low[1]) / (high[0] - low[0]), 0.4, 2.5))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    panel_width = 5.0
    figure = Figure(
        figsize=(panel_width * columns + 1.0, (panel_width * aspect + 0.6) * rows), layout="constrained"
    )
    axes = figure.subplots(rows, columns, squeeze=False)
    mappable = None
    for k, ax in enumerate(axes.ravel()):
        if k >= len(names):
            ax.set_visible(False)
            continue
        name = names[k]
        ax.plot(gt[:, 0], gt[:, 1], color="lightgrey", linewidth=3.0, zorder=1)
        evaluation = evaluations.get(name)
        ax.set_title(display_name(name), fontsize="medium")
        if evaluation is not None:
            a = evaluation.associated
            ok = a.evaluated
            error = a.position_error_2d[ok]
            order = np.argsort(error)  # the worst on top
            est = a.positions[ok][order]
            mappable = ax.scatter(
                est[:, 0],
                est[:, 1],
                c=error[order],
                s=6,
                cmap="plasma",
                vmin=0.0,
                vmax=ERROR_COLOUR_LIMIT_M,
                zorder=2,
            )
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal", adjustable="box")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("east (m)")
        ax.set_ylabel("north (m)")
    if mappable is not None:
        bar = figure.colorbar(mappable, ax=axes.ravel().tolist(), extend="max", shrink=0.8)
        bar.set_label(f"position error (m; ≥ {ERROR_COLOUR_LIMIT_M:g} m in yellow)")
    figure.suptitle("Estimates coloured by their position error (ground truth in grey)")
    return _png(figure)
