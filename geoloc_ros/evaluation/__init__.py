"""Evaluation of pose estimates against RTK ground truth: metrics, seed-style tables, report."""

from geoloc_ros.evaluation.errors import EvaluationError
from geoloc_ros.evaluation.groundtruth import (
    GroundTruth,
    GroundTruthAtStamps,
    GroundTruthSample,
    GroundTruthStatus,
    drive_ground_truth,
)
from geoloc_ros.evaluation.metrics import (
    AssociatedEstimates,
    EvaluationResult,
    SourceEvaluation,
    SourceMetrics,
    associate,
    compute_metrics,
    evaluate_recorded,
    evaluate_source,
    evaluate_sources,
    hold_at_frames,
)
from geoloc_ros.evaluation.report import ReportFiles, write_report
from geoloc_ros.evaluation.tables import (
    PAPER_BOVW_AUGMENTED,
    PAPER_BOVW_ORIGINAL,
    PAPER_POSENET,
    PAPER_REFERENCES,
    PaperReference,
    format_markdown_table,
    format_text_table,
)

__all__ = [
    "PAPER_BOVW_AUGMENTED",
    "PAPER_BOVW_ORIGINAL",
    "PAPER_POSENET",
    "PAPER_REFERENCES",
    "AssociatedEstimates",
    "EvaluationError",
    "EvaluationResult",
    "GroundTruth",
    "GroundTruthAtStamps",
    "GroundTruthSample",
    "GroundTruthStatus",
    "PaperReference",
    "ReportFiles",
    "SourceEvaluation",
    "SourceMetrics",
    "associate",
    "compute_metrics",
    "drive_ground_truth",
    "evaluate_recorded",
    "evaluate_source",
    "evaluate_sources",
    "format_markdown_table",
    "format_text_table",
    "hold_at_frames",
    "write_report",
]
