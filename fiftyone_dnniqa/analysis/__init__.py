"""Analysis: relate quality scores to how models performed.

Pure statistics (no FiftyOne): :mod:`.results`, :mod:`.resampling`, :mod:`.correlation`,
:mod:`.grouping`, :mod:`.tables`. On datasets: performance targets from evaluations
(:mod:`.targets`), the performance prior (:mod:`.prior`), quality fields and their
direction (:mod:`.fields`), difficulty views (:mod:`.difficulty`), objects against their
detection outcomes (:mod:`.objects`), the panel's statistics
(:mod:`.panel_stats`) and the HTML report (:mod:`.report`).
"""

from .correlation import METHODS, auroc, correlate, correlations, rank_fields
from .grouping import binned_performance, group_level_correlation, group_level_correlations, group_table, wilson_interval
from .results import AUROC, BinRow, Correlation, Distribution, FieldRank, GroupRow
from .tables import distribution, format_table

__all__ = [
    "METHODS", "auroc", "correlate", "correlations", "rank_fields", "binned_performance",
    "group_level_correlation", "group_level_correlations", "group_table", "wilson_interval",
    "AUROC", "BinRow", "Correlation", "Distribution", "FieldRank", "GroupRow", "distribution",
    "format_table",
]
