"""Training loops (guided update, fine-tuning, scouts, adaptation), calibration and novelty."""

from scgtl.train._adapt import fit_masked_reconstruction
from scgtl.train._batched_scouts import (
    fit_networks_batched,
    fit_scouts_batched,
    scout_batch_size,
)
from scgtl.train._blocks import ShuffledBlockSampler, ShuffledBlockSplitter
from scgtl.train._calibration import (
    UNKNOWN_LABEL,
    UNKNOWN_LEVEL,
    calibration_record,
    class_prototypes,
    conformal_threshold,
    fit_temperature,
    held_out_novelty,
    leave_one_out_novelty,
    prototype_novelty,
)
from scgtl.train._checkpoint import EpochCheckpoint
from scgtl.train._few_shot import (
    fine_tune_network,
    fine_tune_networks,
    fit_few_shot,
    prototype_head,
)
from scgtl.train._guided import GuidedUpdate
from scgtl.train._progress import PretrainingProgress, TrainingDisplay, TrainingLengthLog
from scgtl.train._scouts import estimate_scout_seconds, run_scouts
from scgtl.train._wide import (
    StudyPCA,
    add_wide_path,
    choose_wide_weight,
    cross_validated_log_proba,
    fit_linear_path,
    support_folds,
)

__all__ = [
    "UNKNOWN_LABEL",
    "UNKNOWN_LEVEL",
    "calibration_record",
    "class_prototypes",
    "conformal_threshold",
    "fit_temperature",
    "held_out_novelty",
    "leave_one_out_novelty",
    "prototype_novelty",
    "EpochCheckpoint",
    "ShuffledBlockSampler",
    "ShuffledBlockSplitter",
    "TrainingDisplay",
    "TrainingLengthLog",
    "PretrainingProgress",
    "GuidedUpdate",
    "StudyPCA",
    "add_wide_path",
    "choose_wide_weight",
    "cross_validated_log_proba",
    "support_folds",
    "estimate_scout_seconds",
    "fine_tune_network",
    "fine_tune_networks",
    "fit_few_shot",
    "fit_linear_path",
    "fit_masked_reconstruction",
    "fit_networks_batched",
    "fit_scouts_batched",
    "prototype_head",
    "run_scouts",
    "scout_batch_size",
]
