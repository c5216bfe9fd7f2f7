"""Pure torch modules: the encoder, the pre-training network and the fine-tuned classifier."""

from scgtl.module._classifier import GTLClassifierModule, pool_log_probabilities
from scgtl.module._encoder import MLPEncoder
from scgtl.module._gtl import GTLModule

__all__ = ["GTLClassifierModule", "GTLModule", "MLPEncoder", "pool_log_probabilities"]
