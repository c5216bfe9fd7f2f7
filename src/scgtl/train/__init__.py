"""Training components: the guided update, the few-shot loop, and running scouts."""

from scgtl.train._few_shot import (
    check_head_init,
    check_training_settings,
    fit_few_shot,
    prototype_head,
)
from scgtl.train._guided import GuidedUpdate
from scgtl.train._scouts import run_scouts

__all__ = [
    "GuidedUpdate",
    "check_head_init",
    "check_training_settings",
    "fit_few_shot",
    "prototype_head",
    "run_scouts",
]
