"""Scout sampling and guide maths: parameter changes of scouts -> plasticity in [0, 1]."""

from scgtl.guide._guide import (
    NORMALIZATIONS,
    STATISTICS,
    TEMPERATURES,
    apply_temperature,
    guide_from_changes,
    mean_change,
    normalize,
    parameter_changes,
    summarize_guide,
)
from scgtl.guide._scouts import ScoutTask, cluster_groups, sample_scout_tasks

__all__ = [
    "NORMALIZATIONS",
    "STATISTICS",
    "ScoutTask",
    "TEMPERATURES",
    "apply_temperature",
    "cluster_groups",
    "guide_from_changes",
    "mean_change",
    "normalize",
    "parameter_changes",
    "sample_scout_tasks",
    "summarize_guide",
]
