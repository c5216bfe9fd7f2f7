"""Training components: the guided update, the few-shot loop, and running scouts."""

from scgtl.train._few_shot import check_training_settings, fit_few_shot
from scgtl.train._guided import GuidedUpdate
from scgtl.train._scouts import run_scouts

__all__ = ["GuidedUpdate", "check_training_settings", "fit_few_shot", "run_scouts"]
