"""Parameter descriptions shared by several docstrings, written once (as scvi-tools does).

A docstring decorated with ``@doc.dedent`` may use ``%(name)s`` for any entry below.
"""

from __future__ import annotations

from docrep import DocstringProcessor

_architecture = """\
n_hidden
    Width of the encoder's hidden layers.
n_latent
    Size of the latent representation (``obsm["X_scgtl"]``).
n_layers
    Number of hidden layers.
dropout_rate
    Dropout of the hidden layers."""

_query_layer_units = """\
layer
    Layer of ``adata`` to read (``None``: ``X``).
units
    Units of ``adata``'s values (``"counts"``, ``"normalized"`` or ``"log1p"``); defaults to
    the corpus's units."""

_head_init = """\
head_init
    ``"prototypes"``: the head starts as the nearest-class-mean classifier in the encoder's
    latent space (:func:`scgtl.train.prototype_head`); ``"random"``: PyTorch's default
    initialisation."""

_fit_hooks = """\
input_transform
    Research hook: a function applied to the support rows (log expression) at every step
    before the forward pass, e.g. a random gene mask as augmentation.
extra_loss
    Research hook: ``extra_loss(encoder, head) -> scalar tensor`` added to the cross-entropy at
    every step, e.g. an L2 pull towards the pre-trained weights or an entropy term on unlabelled
    rows.
callback
    Research hook: ``callback(step, loss)`` after every optimiser step (``loss`` a float)."""

_batch_size = """\
batch_size
    Observations per batch; only one batch is dense at a time."""

#: The shared descriptions: ``%(param_architecture)s`` etc.
doc = DocstringProcessor(
    param_architecture=_architecture,
    param_query_layer_units=_query_layer_units,
    param_head_init=_head_init,
    param_fit_hooks=_fit_hooks,
    param_batch_size=_batch_size,
)
