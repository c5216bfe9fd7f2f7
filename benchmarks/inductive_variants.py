"""Inductive variants of GTL's network, one change at a time (issue 13, part 1).

The package default `gtl` pools the guided network with a wide path (logistic regression on the
study's genes). These variants change the network and keep the rest:

- `gtl_guide_floor<f>`: every weight's plasticity at least f (`guide=` of `fine_tune`: the
  model's guide with `max(g, f)`).
- `gtl_first_layer_floor<f>`: the same floor on the first layer only, the layer whose weights
  belong to input genes (per-gene plasticity), so the network may re-weight genes the corpus
  never varied; the deeper layers keep the guide.
- `--n-latent N`: the models are pre-trained with a wider latent space (`GTL(n_latent=N)`,
  default 64), a latent that keeps more of the input; then `gtl` and `gtl_network` run on them.

Same targets, episodes and settings as do_no_harm.py:

    python benchmarks/inductive_variants.py --seed 1 --out benchmarks/results/inductive_variants
    python benchmarks/inductive_variants.py --seed 1 --n-latent 256 \
        --methods gtl gtl_network --out benchmarks/results/inductive_variants_latent256

Writes <out>/<target>/ and <out>/overview.csv, as do_no_harm.py.
"""

from __future__ import annotations

import common
import torch

from scgtl import benchmark

#: The first layer of the encoder: one weight per (hidden unit, input gene).
FIRST_LAYER = "hidden.fc_layers.Layer 0.0."


def floored(guide: dict[str, torch.Tensor], floor: float, *, first_layer_only: bool) -> dict:
    """``guide`` with every plasticity raised to at least ``floor`` (or the first layer's only)."""
    return {
        name: value.clamp(min=floor)
        if not first_layer_only or name.startswith(FIRST_LAYER)
        else value
        for name, value in guide.items()
    }


class FlooredGuide(benchmark.FineTuneMethod):
    """GTL fine-tuned with a floor on the model's guide."""

    def __init__(self, name: str, *, floor: float, first_layer_only: bool, **kwargs):
        super().__init__(name, use_guide=True, **kwargs)
        self.floor = floor
        self.first_layer_only = first_layer_only

    def options(self, task, *, seed):
        guide = floored(task.model.guide, self.floor, first_layer_only=self.first_layer_only)
        return {**super().options(task, seed=seed), "guide": guide}


def variants() -> dict[str, benchmark.Method]:
    """The variants of this study by name, with the references they are compared with."""
    builtins = benchmark.builtin_methods()
    methods = [
        builtins["gtl"],
        builtins["gtl_network"],
        FlooredGuide("gtl_guide_floor0.1", floor=0.1, first_layer_only=False),
        FlooredGuide("gtl_first_layer_floor0.25", floor=0.25, first_layer_only=True),
        FlooredGuide("gtl_first_layer_floor1", floor=1.0, first_layer_only=True),
        builtins["logreg"],
    ]
    return {m.name: m for m in methods}


def main() -> None:
    chosen = variants()
    parser = common.study_parser(
        __doc__.splitlines()[0],
        chosen,
        only_these=True,
        default_out=common.RESULTS / "inductive_variants",
    )
    parser.add_argument("--n-latent", type=int, default=None, help="pre-train with this latent")
    args = parser.parse_args()
    common.run_study(
        args,
        [chosen[name] for name in args.methods],
        title="inductive variants",
        model_kwargs=None if args.n_latent is None else {"n_latent": args.n_latent},
    )


if __name__ == "__main__":
    main()
