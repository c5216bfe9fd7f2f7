"""Fine-tuning variants of the engineering study, on the default model and the real targets.

Pre-trains the default model exactly as few_shot_real.py does (PBMC corpus, 2000 HVGs, seed 0),
then runs scgtl.benchmark.few_shot on the same episodes (k = 1, 3, 5; 20 per k; seed 0) of
mudan_ref, pbmc68k_reduced and yan with GTL, plain fine-tuning and the variants of one or more
groups:

l2sp
    an L2 penalty pulling the encoder back to its pre-trained weights ("L2-SP",
    alpha/2 * |w - w0|^2), with and without the guide;
layers
    the guide applied to one encoder layer only, the other layer trained freely;
temperature
    the default guide reshaped by ``scgtl.guide.apply_temperature`` (warm, icy, top 10 % free,
    or twice every update);
entropy
    transductive: the entropy of the predictions on 256 random unlabelled target rows per step
    is minimised with the cross-entropy (uses the target's unlabelled rows, like ``adapt``);
ensemble
    the mean probabilities of 5 GTL fits with different seeds (dropout and head differ);
augment
    a fresh random subset of genes masked (zeroed) in the support rows at every step, as in
    pre-training, with and without the guide;
adapt
    ``model.adapt`` settings (steps, replay) before guided fine-tuning.

The variants that are not package options are written here as hooks of ``model.fine_tune``
(``guide``, ``input_transform``, ``extra_loss``), passed by a ``FineTuneMethod`` subclass; the
training loop is the package's own.

    python benchmarks/finetune_variants.py --groups l2sp layers temperature entropy ensemble \
        augment adapt

Data: $SCGTL_DATA_DIR, or ../shared/data beside the repository.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd
import torch

from scgtl import benchmark
from scgtl.benchmark import FewShotTask, FineTuneMethod, Method
from scgtl.guide import apply_temperature

TARGETS = common.PBMC_TARGETS


class VariantFineTune(FineTuneMethod):
    """``model.fine_tune`` with the research options, through its public hooks.

    Parameters
    ----------
    name
        Identifier in the results table.
    use_guide
        Scale the encoder's updates by the model's guide.
    l2sp
        Weight ``alpha`` of ``alpha / 2 * sum |w - w_pretrained|^2`` over the encoder.
    free
        Encoder parameters whose name starts with one of these prefixes are not guided.
    temperature
        Options of ``scgtl.guide.apply_temperature`` applied to the model's guide.
    entropy
        Weight of the mean prediction entropy on 256 random target rows per step.
    n_models
        Average the probabilities of this many fits with seeds ``100 * seed + i``.
    mask
        Fraction of genes zeroed in the support rows, drawn afresh at every step.
    """

    def __init__(
        self,
        name: str,
        *,
        use_guide: bool = True,
        l2sp: float = 0.0,
        free: tuple[str, ...] = (),
        temperature: dict | None = None,
        entropy: float = 0.0,
        n_models: int = 1,
        mask: float = 0.0,
    ):
        super().__init__(name, use_guide=use_guide)
        self.l2sp, self.free, self.entropy = l2sp, free, entropy
        self.temperature = temperature or {}
        self.n_models, self.mask = n_models, mask

    def fit_predict_proba(self, task: FewShotTask, *, seed: int) -> pd.DataFrame:
        if self.n_models == 1:
            return super().fit_predict_proba(task, seed=seed)
        fits = [
            super(VariantFineTune, self).fit_predict_proba(task, seed=100 * seed + i)
            for i in range(self.n_models)
        ]
        return sum(fits) / self.n_models

    def options(self, task: FewShotTask, *, seed: int) -> dict:
        options = super().options(task, seed=seed)
        if self.use_guide and (self.temperature or self.free):
            options["guide"] = self._guide(task.model.guide)
        if self.mask:
            options["input_transform"] = RandomGeneMask(self.mask)
        if self.entropy:
            rows = torch.as_tensor(task.data.X_log)
            options["extra_loss"] = UnlabelledEntropy(rows, self.entropy, seed=seed)
        if self.l2sp:
            options["extra_loss"] = L2SP(self.l2sp)
        return options

    def _guide(self, guide: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        guide = apply_temperature(guide, **self.temperature)
        return {
            name: torch.ones_like(g) if self.free and name.startswith(self.free) else g
            for name, g in guide.items()
        }


class RandomGeneMask:
    """``input_transform``: a fresh random ``rate`` of the genes zeroed at every step."""

    def __init__(self, rate: float):
        self.rate = rate

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(torch.rand_like(x) < self.rate, 0.0)


class UnlabelledEntropy:
    """``extra_loss``: ``weight`` x mean prediction entropy on 256 random unlabelled rows."""

    def __init__(self, rows: torch.Tensor, weight: float, *, seed: int):
        self.rows, self.weight = rows, weight
        self.rng = np.random.default_rng(seed)

    def __call__(self, encoder, head) -> torch.Tensor:
        drawn = self.rows[self.rng.choice(self.rows.shape[0], size=256)]
        p = torch.softmax(head(encoder(drawn)), 1)
        return -self.weight * (p * torch.log(p + 1e-8)).sum(1).mean()


class L2SP:
    """``extra_loss``: ``alpha / 2 * sum |w - w0|^2`` over the encoder, ``w0`` its weights at
    the first step (the pre-trained ones)."""

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.anchor: dict[str, torch.Tensor] | None = None

    def __call__(self, encoder, head) -> torch.Tensor:
        if self.anchor is None:
            self.anchor = {k: p.detach().clone() for k, p in encoder.named_parameters()}
        drift = sum(((p - self.anchor[k]) ** 2).sum() for k, p in encoder.named_parameters())
        return self.alpha / 2 * drift


def adapted(name: str, n_steps: int, replay: float) -> FineTuneMethod:
    return FineTuneMethod(name, adapt={"n_steps": n_steps, "replay": replay})


GROUPS: dict[str, list[Method]] = {
    "l2sp": [
        VariantFineTune("gtl_l2sp_0.01", l2sp=0.01),
        VariantFineTune("gtl_l2sp_0.1", l2sp=0.1),
        VariantFineTune("finetune_l2sp_0.1", use_guide=False, l2sp=0.1),
        VariantFineTune("finetune_l2sp_1", use_guide=False, l2sp=1.0),
    ],
    "layers": [
        VariantFineTune("gtl_guide_input_layer_only", free=("to_latent",)),
        VariantFineTune("gtl_guide_latent_layer_only", free=("hidden",)),
    ],
    "temperature": [
        VariantFineTune("gtl_warm", temperature={"temperature": "warm"}),
        VariantFineTune("gtl_icy", temperature={"temperature": "icy"}),
        VariantFineTune("gtl_freeze_top_10pct", temperature={"temperature": "freeze"}),
        VariantFineTune("gtl_scale_2", temperature={"scale": 2.0}),
    ],
    "entropy": [
        VariantFineTune("gtl_entropy_0.1", entropy=0.1),
        VariantFineTune("gtl_entropy_0.5", entropy=0.5),
    ],
    "ensemble": [VariantFineTune("gtl_ensemble_5", n_models=5)],
    "augment": [
        VariantFineTune("gtl_mask_0.3", mask=0.3),
        VariantFineTune("gtl_mask_0.5", mask=0.5),
        VariantFineTune("finetune_mask_0.3", use_guide=False, mask=0.3),
    ],
    "adapt": [
        adapted("gtl_adapt_300_replay_0", 300, 0.0),
        adapted("gtl_adapt_1000_replay_0.5", 1000, 0.5),
        adapted("gtl_adapt_3000_replay_0.5", 3000, 0.5),
        adapted("gtl_adapt_1000_replay_0.75", 1000, 0.75),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--k-shots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--n-episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=common.RESULTS / "finetune_variants")
    args = parser.parse_args()
    common.configure(args.threads, progress_bar=None)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = common.data_dir()
    methods = [FineTuneMethod("gtl"), FineTuneMethod("finetune", use_guide=False)]
    methods += [m for group in args.groups for m in GROUPS[group]]
    # One file per set of groups, so that two sets can run at once (one core each).
    csv = args.out / f"variants_{'_'.join(args.groups)}.csv"
    tables = []
    model = benchmark.pretrain(
        common.load_corpus(folder), units="counts", n_hvg=2000, seed=args.seed, progress=False
    )
    for target_name in TARGETS:
        target, labels_key, units = common.load_target(target_name, folder)
        start = time.perf_counter()
        result = common.run_episodes(
            model, target, labels_key, units, args, methods=methods, progress=False
        )
        tables.append(result.table.assign(target=target_name))
        pd.concat(tables).to_csv(csv, index=False)
        print(f"{target_name}: {time.perf_counter() - start:.0f} s", flush=True)
    report = to_markdown(read_all(args.out))
    (args.out / "variants.md").write_text(report + "\n")
    print(report)


def read_all(folder: Path) -> pd.DataFrame:
    """Every variants_*.csv of ``folder``; GTL and plain fine-tuning, run in each, kept once."""
    tables = [pd.read_csv(path) for path in sorted(folder.glob("variants_*.csv"))]
    table = pd.concat(tables)
    return table.drop_duplicates(subset=["target", "method", "k", "episode"])


def to_markdown(table: pd.DataFrame) -> str:
    """Per method: mean over k per target, and the paired difference to GTL (mean over k)."""
    wide = table.pivot_table(
        index=["target", "k", "episode"], columns="method", values="balanced_accuracy"
    )
    per_k = wide.groupby(["target", "k"]).mean()
    mean = per_k.groupby("target").mean()
    diff = wide.sub(wide["gtl"], axis=0).groupby(["target", "k"]).mean().groupby("target").mean()
    order = list(dict.fromkeys(table["method"]))
    lines = [
        "| method | " + " | ".join(f"{t} | − gtl" for t in TARGETS) + " |",
        "|---|" + "---|---|" * len(TARGETS),
    ]
    for method in order:
        cells = []
        for target in TARGETS:
            cells += [f"{mean.loc[target, method]:.3f}", f"{diff.loc[target, method]:+.3f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
