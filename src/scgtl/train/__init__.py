"""Training loops (guided update, fine-tuning, scouts, adaptation), calibration and novelty."""

from scgtl.train._adapt import fit_masked_reconstruction
from scgtl.train._batched_scouts import (
    SCOUT_MEMORY_BYTES,
    fit_networks_batched,
    fit_scouts_batched,
    scout_batch_size,
)
from scgtl.train._blocks import ShuffledBlockSampler, ShuffledBlockSplitter
from scgtl.train._calibration import (
    TEMPERATURE_BOUNDS,
    TEMPERATURE_PRIOR,
    UNKNOWN_LABEL,
    UNKNOWN_LEVEL,
    calibration_record,
    check_unknown,
    class_prototypes,
    conformal_threshold,
    fit_temperature,
    held_out_novelty,
    leave_one_out_novelty,
    prototype_novelty,
)
from scgtl.train._checkpoint import (
    CHECKPOINT_FILE,
    EpochCheckpoint,
    ResumePoint,
    checkpoint_file,
    read_checkpoint,
)
from scgtl.train._distributed import (
    DISTRIBUTED_SPLIT_SEED,
    is_distributed,
    seeded_split,
    split_sizes,
)
from scgtl.train._few_shot import (
    check_head_init,
    check_training_settings,
    fine_tune_network,
    fine_tune_networks,
    fit_few_shot,
    prototype_head,
)
from scgtl.train._guided import GuidedUpdate
from scgtl.train._progress import PretrainingProgress, TrainingDisplay, TrainingLengthLog
from scgtl.train._scouts import estimate_scout_seconds, run_scouts
from scgtl.train._wide import (
    MAX_PCA_ROWS,
    WIDE_WEIGHT_GRID,
    WIDE_WEIGHT_ONE_SHOT,
    StudyPCA,
    add_wide_path,
    check_wide_weight,
    choose_wide_weight,
    cross_validated_log_proba,
    fit_linear_path,
    support_folds,
)

__all__ = [
    "TEMPERATURE_BOUNDS",
    "TEMPERATURE_PRIOR",
    "UNKNOWN_LABEL",
    "UNKNOWN_LEVEL",
    "calibration_record",
    "check_unknown",
    "class_prototypes",
    "conformal_threshold",
    "fit_temperature",
    "held_out_novelty",
    "leave_one_out_novelty",
    "prototype_novelty",
    "CHECKPOINT_FILE",
    "DISTRIBUTED_SPLIT_SEED",
    "EpochCheckpoint",
    "ResumePoint",
    "ShuffledBlockSampler",
    "ShuffledBlockSplitter",
    "TrainingDisplay",
    "TrainingLengthLog",
    "PretrainingProgress",
    "checkpoint_file",
    "is_distributed",
    "read_checkpoint",
    "seeded_split",
    "split_sizes",
    "MAX_PCA_ROWS",
    "SCOUT_MEMORY_BYTES",
    "WIDE_WEIGHT_GRID",
    "WIDE_WEIGHT_ONE_SHOT",
    "GuidedUpdate",
    "StudyPCA",
    "add_wide_path",
    "check_head_init",
    "check_training_settings",
    "check_wide_weight",
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
