"""Training loops: the guided update, few-shot fine-tuning, scouts and target adaptation."""

from scgtl.train._adapt import fit_masked_reconstruction
from scgtl.train._few_shot import (
    check_head_init,
    check_training_settings,
    fine_tune_network,
    fit_few_shot,
    prototype_head,
)
from scgtl.train._guided import GuidedUpdate
from scgtl.train._progress import StderrProgressBar
from scgtl.train._scouts import run_scouts

__all__ = [
    "GuidedUpdate",
    "StderrProgressBar",
    "check_head_init",
    "check_training_settings",
    "fine_tune_network",
    "fit_few_shot",
    "fit_masked_reconstruction",
    "prototype_head",
    "run_scouts",
]
