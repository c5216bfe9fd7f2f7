"""Progress goes to stderr, results to stdout, and one setting silences every bar."""

from __future__ import annotations

import pytest

import scgtl


def _train(corpus, fast_guide, **kwargs):
    scgtl.GTL.setup_anndata(corpus, units="log1p")
    model = scgtl.GTL(corpus, n_hidden=16, n_latent=8)
    model.train(max_epochs=2, guide_kwargs={**fast_guide, "n_scouts": 3}, **kwargs)
    return model


def test_bars_go_to_stderr(pbmc_corpus, fast_guide, capsys):
    _train(pbmc_corpus, fast_guide, enable_progress_bar=True)
    out, err = capsys.readouterr()
    assert "Epoch 2/2" in err
    assert "Scouts" in err
    assert "Epoch" not in out and "Scouts" not in out


@pytest.mark.parametrize("switch", ["argument", "setting"])
def test_one_switch_silences_every_bar(pbmc_corpus, pbmc_target, fast_guide, capsys, switch):
    kwargs = {"enable_progress_bar": False} if switch == "argument" else {}
    try:
        if switch == "setting":
            scgtl.settings.progress_bar = False
        model = _train(pbmc_corpus, fast_guide, **kwargs)
        if switch == "setting":
            scgtl.benchmark.few_shot(
                model,
                pbmc_target,
                labels_key="bulk_labels",
                k_shots=1,
                n_episodes=1,
                methods=["gtl", "logreg"],
            )
    finally:
        scgtl.settings.progress_bar = True
    out, err = capsys.readouterr()
    for text in ("Epoch", "Training", "Scouts", "few-shot benchmark"):
        assert text not in out and text not in err


def test_progress_setting_rejects_non_booleans():
    with pytest.raises(ValueError, match="progress_bar='no'"):
        scgtl.settings.progress_bar = "no"
    assert scgtl.settings.progress_bar is True
