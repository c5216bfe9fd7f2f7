"""How :meth:`scgtl.GTL.fine_tune` trains: its method's settings and research hooks, grouped.

What a user chooses (the study, its labels, ``k_shot``, the seed, ``transductive``) are
``fine_tune``'s own options. The rest (training knobs, the ablations of the method, the hooks
research variants plug into) travel in one :class:`FineTunePlan`, as scvi-tools groups a
training plan's options in ``plan_kwargs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scgtl._docs import doc
from scgtl.train._few_shot import check_head_init, check_training_settings
from scgtl.train._wide import check_wide_form, check_wide_weight

if TYPE_CHECKING:
    import torch

    from scgtl.train._few_shot import ExtraLoss, HeadInit, InputTransform, StepCallback
    from scgtl.train._wide import WideForm


@doc.dedent
@dataclass(frozen=True)
class FineTunePlan:
    """Settings and research hooks of :meth:`scgtl.GTL.fine_tune` (its ``plan_kwargs``).

    ``fine_tune(..., plan_kwargs={"n_steps": 200})`` and
    ``fine_tune(..., plan_kwargs=FineTunePlan(n_steps=200))`` are the same call; the defaults
    are the package's method.

    Parameters
    ----------
    n_steps, lr, weight_decay
        Full-batch Adam fine-tuning of the network.
    %(param_head_init)s
    use_guide
        Scale each update by the guide (GTL). ``False`` is plain fine-tuning.
    guide
        A guide to use instead of the model's own (same parameter names and shapes), e.g.
        ``scgtl.guide.apply_temperature(model.guide, "warm")``.
    from_scratch
        Start from a randomly initialised network of the same architecture, without guide (nor
        adaptation to the study).
    wide
        Pool the network with the wide path, a logistic regression on the study's own genes
        (the default). ``False``: the network alone.
    wide_weight
        Weight ``w`` of the wide path in ``[0, 1]`` (``0``: the network's prediction, ``1``: the
        logistic regression's); ``None`` chooses it by cross-validation on the support.
    wide_form
        What the wide path's logistic regression reads: ``"genes"`` (log expression),
        ``"scaled_genes"`` (genes scaled to unit variance, as CellTypist; over the study's rows
        when ``transductive``, else over the support), ``"pca"`` (the study's principal
        components; ``transductive`` only), ``"pca+scaled_genes"`` (those two pooled), or
        ``"auto"``: the regime's candidates, chosen with the weight by cross-validation on the
        support (transductive: ``"pca+scaled_genes"``, ``"pca"``, ``"scaled_genes"``;
        inductive: ``"genes"``, ``"scaled_genes"``; the first where a class has one sample).
        ``None`` (default): ``"pca"`` when ``transductive``, else ``"genes"``.
    %(param_fit_hooks)s
        The hooks also apply to the cross-validation's fits; ``callback`` sees only the
        final fit's steps.

    Raises
    ------
    ValueError
        Settings that cannot train: ``n_steps < 1``, ``lr <= 0``, an unknown ``head_init``, a
        ``wide_weight`` outside ``[0, 1]`` or given with ``wide=False``, a ``guide`` with
        ``use_guide=False`` or ``from_scratch=True``.
    TypeError
        ``use_guide``, ``from_scratch`` or ``wide`` not a bool.
    """

    n_steps: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    head_init: HeadInit = "prototypes"
    use_guide: bool = True
    guide: Mapping[str, torch.Tensor] | None = None
    from_scratch: bool = False
    wide: bool = True
    wide_weight: float | None = None
    wide_form: WideForm | None = None
    input_transform: InputTransform | None = None
    extra_loss: ExtraLoss | None = None
    callback: StepCallback | None = None

    def __post_init__(self) -> None:
        check_training_settings(n_steps=self.n_steps, lr=self.lr, weight_decay=self.weight_decay)
        check_head_init(self.head_init)
        check_wide_weight(self.wide_weight)
        check_wide_form(self.wide_form)
        for name in ("use_guide", "from_scratch", "wide"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise TypeError(f"{name}={value!r} must be True or False.")
        for name in ("wide_weight", "wide_form"):
            if getattr(self, name) is not None and not self.wide:
                raise ValueError(f"{name}={getattr(self, name)!r} is given, but wide=False.")
        if self.guide is not None and (self.from_scratch or not self.use_guide):
            raise ValueError("guide= is given, but use_guide=False or from_scratch=True.")

    @classmethod
    def of(cls, plan_kwargs: FineTunePlan | Mapping[str, Any] | None) -> FineTunePlan:
        """``fine_tune``'s ``plan_kwargs`` as a plan: ``None`` gives the defaults.

        Raises
        ------
        TypeError
            ``plan_kwargs`` is neither a plan nor a mapping, or names an unknown setting (the
            message lists the valid ones).
        """
        if plan_kwargs is None:
            return cls()
        if isinstance(plan_kwargs, cls):
            return plan_kwargs
        if not isinstance(plan_kwargs, Mapping):
            raise TypeError(
                f"plan_kwargs={plan_kwargs!r} must be None, a dict or a scgtl.FineTunePlan."
            )
        unknown = sorted(set(plan_kwargs) - set(cls.setting_names()))
        if unknown:
            raise TypeError(
                f"plan_kwargs names unknown settings {unknown}; valid: {list(cls.setting_names())}."
            )
        return cls(**plan_kwargs)

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The names a ``plan_kwargs`` dict may hold."""
        return tuple(f.name for f in dataclasses.fields(cls))
