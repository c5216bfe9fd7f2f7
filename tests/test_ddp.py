"""Pre-training on several devices through Lightning's DDP: two CPU processes, gloo (issue 14).

Lightning's ``"ddp"`` strategy starts the other processes by running the user's script again,
so the training runs in a script of its own, in a subprocess with a time limit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import scgtl

#: Seconds the two processes may take together (about 30 on a quiet 2-core machine).
TIME_LIMIT = 240

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import anndata as ad
    import numpy as np
    import torch
    from scipy import sparse

    import scgtl

    out = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.3, size=(300, 100)).astype(np.float32)
    corpus = ad.AnnData(sparse.csr_matrix(counts))
    corpus.var_names = [f"g{i}" for i in range(100)]
    scgtl.GTL.setup_anndata(corpus, units="counts")
    torch.manual_seed(0)
    model = scgtl.GTL(corpus, n_hidden=32, n_latent=8)
    returned = model.train(
        max_epochs=2,
        batch_size=64,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        checkpoint_dir=out / "checkpoint",
        enable_progress_bar=False,
        guide_kwargs={"n_scouts": 3, "n_steps": 5, "n_clusters": 3, "k_shot": 2},
    )
    rank = model.trainer.global_rank
    torch.save(
        {
            "returned": returned,
            "world_size": model.trainer.world_size,
            "backend": model.trainer.strategy.process_group_backend,
            "is_trained": model.is_trained,
            "weights": model.module.state_dict(),
            "guide": model.guide,
            "train_indices": torch.as_tensor(np.sort(model.train_indices)),
        },
        out / f"rank{rank}.pt",
    )
    if model.trainer.is_global_zero:
        model.save(out / "model")
    """
)


def _run_two_processes(script, out) -> subprocess.CompletedProcess:
    """Run ``script out``; on timeout kill it and the process it launched (one session)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "LOCAL_RANK"))}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    command = [sys.executable, str(script), str(out)]
    with subprocess.Popen(
        command,
        cwd=out,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"DDP training did not finish in {TIME_LIMIT} s:\n{output[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output)


def _finite(tensors: dict) -> bool:
    return all(torch.isfinite(v).all() for v in tensors.values())


def test_ddp_on_two_cpu_processes(tmp_path):
    script = tmp_path / "pretrain_ddp.py"
    script.write_text(SCRIPT)
    result = _run_two_processes(script, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for rank in ranks:  # train() returned on both processes, trained and with a guide
        assert rank["returned"] is None
        assert rank["world_size"] == 2 and rank["backend"] == "gloo"
        assert rank["is_trained"]
        assert _finite(rank["weights"]) and _finite(rank["guide"])
    # Both processes trained on one split, kept the same weights and ran the same scouts.
    first, second = ranks
    assert torch.equal(first["train_indices"], second["train_indices"])
    for part in ("weights", "guide"):
        for name, value in first[part].items():
            assert torch.equal(value, second[part][name]), f"{part} {name}"

    loaded = scgtl.GTL.load(tmp_path / "model")
    for name, value in loaded.module.state_dict().items():
        assert torch.equal(value, first["weights"][name]), name
    for name, value in loaded.guide.items():
        assert torch.equal(value, first["guide"][name]), name
    checkpoint = torch.load(tmp_path / "checkpoint" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1
