"""Plots, following scanpy's conventions (``ax``, ``show``, ``save``; the Axes returned).

:func:`guide`
    distribution of the guide's values per encoder tensor;
:func:`gene_plasticity`
    the most and least plastic input genes (:func:`scgtl.tl.gene_plasticity`);
:func:`accuracy_vs_k`
    a benchmark's score against ``k``, one line per method;
:func:`confusion_matrix`
    a prediction column against a truth column of ``adata.obs``;
:func:`reliability`
    accuracy against confidence per confidence bin (a reliability diagram), of a benchmark's
    methods or of a prediction in ``adata.obs``.

Each draws into ``ax`` or a new figure, writes it when ``save`` is a path (or ``True``: scanpy's
figure folder), shows it where matplotlib can (a notebook, a window) and otherwise returns the
Axes (a Figure for the two panels of :func:`gene_plasticity`), so it also runs headless
(``MPLBACKEND=Agg``).
"""

from scgtl.pl._benchmark import accuracy_vs_k
from scgtl.pl._model import gene_plasticity, guide
from scgtl.pl._prediction import confusion_matrix
from scgtl.pl._reliability import reliability

__all__ = ["accuracy_vs_k", "confusion_matrix", "gene_plasticity", "guide", "reliability"]
