"""The transductive baselines and the baselines on the target's own genes (issue 13).

``yan`` (90 embryo cells, six stages, RPKM), ``pbmc_target`` (the embedded default's four
held-out cell types) and ``gtl_model`` (the run's one pre-trained model, whose genes are exactly
``pbmc_target``'s) come from tests/conftest.py.
"""

from __future__ import annotations

import inspect
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from scgtl import benchmark
from scgtl._cli import build_parser
from scgtl.benchmark import FewShotTask, builtin_methods
from scgtl.benchmark._default import DEFAULT_LABELS_KEY

pytestmark = pytest.mark.filterwarnings("ignore:Aligned query genes:UserWarning")

TRANSDUCTIVE = ["pca_label_spreading", "pca_self_training"]
BASELINES = ["logreg", "pca_logreg", "pca_knn"]
PCA_BASELINES = ["pca_logreg", "pca_knn", *TRANSDUCTIVE]
YAN = {"labels_key": "cell_type", "units": "normalized", "progress": False}


def _table(result: benchmark.FewShotResult) -> pd.DataFrame:
    return result.table.drop(columns="fit_seconds")


class _GenesOnly:
    """A stand-in for a pre-trained model, for baselines only: its genes and units."""

    def __init__(self, gene_names, units: str = "normalized"):
        self.gene_names = pd.Index(gene_names)
        self.units = units


class _GeneSpy(benchmark.Method):
    """Records the shapes of the expression it was shown; predicts uniform probabilities."""

    def __init__(self, name: str, *, needs_model: bool):
        self.name = name
        self.needs_model = needs_model
        self.shapes: list[tuple] = []

    def fit_predict_proba(self, task, *, seed):
        self.shapes.append(
            (task.X_support.shape[1], task.X_query.shape[1], task.X_all.shape, task.genes)
        )
        return np.full((task.query_indices.size, len(task.classes)), 1 / len(task.classes))


class _ModelGenesSpy(_GeneSpy):
    """A baseline that asks for the model's genes."""

    reads_model_genes = True


# ---------------------------------------------------------------------------------- registry
def test_defaults_unchanged_and_new_methods_by_name(yan):
    assert benchmark.DEFAULT_METHODS == (
        "gtl", "gtl_transductive", "finetune", "scratch", "logreg", "pca_logreg", "pca_knn",
        *TRANSDUCTIVE, "celltypist",
    )  # fmt: skip
    builtins = builtin_methods()
    assert list(builtins) == [*benchmark.DEFAULT_METHODS, "gtl_network"]
    # Without a model the defaults are the baselines (CellTypist where it can run).
    runs_celltypist = benchmark.celltypist_problem() is None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The benchmark runs without 'celltypist'")
        res = benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=1, **YAN)
    expected = [*BASELINES, *TRANSDUCTIVE, *(["celltypist"] if runs_celltypist else [])]
    assert list(dict.fromkeys(res.table["method"])) == expected
    # The regime of every built-in method, and of an adapted fine-tuning. The PCA baselines fit
    # their PCA on every row of the target, query rows included: transductive.
    regimes = {name: m.transductive for name, m in builtins.items()}
    assert regimes == {
        "gtl": False, "finetune": False, "scratch": False, "logreg": False,
        "pca_logreg": True, "pca_knn": True,
        "pca_label_spreading": True, "pca_self_training": True, "gtl_network": False,
        "gtl_transductive": True, "celltypist": False,
    }  # fmt: skip
    assert benchmark.FineTuneMethod("gtl_adapted", adapt={}).transductive
    assert benchmark.FineTuneMethod("reads_study", transductive=True).transductive
    assert not benchmark.FineTuneMethod("plain").transductive
    assert not benchmark.Method.transductive
    assert all("transductive" in builtins[name].description for name in PCA_BASELINES)


# ---------------------------------------------------------------------------------- transductive
def test_transductive_baselines_beat_chance_on_yan(yan, adata_snapshot):
    snapshot = adata_snapshot(yan)
    res = benchmark.few_shot(
        None, yan, k_shots=(3,), n_episodes=3, methods=[*BASELINES, *TRANSDUCTIVE], **YAN
    )
    snapshot.assert_unchanged(yan)
    means = res.table.groupby("method")["balanced_accuracy"].mean()
    chance = 1 / 6
    # Measured (seed 0, 3 episodes): label spreading 0.81, self-training 0.96.
    assert means["pca_label_spreading"] > max(0.6, 3 * chance), means
    assert means["pca_self_training"] > 0.8, means
    assert (res.table["n_query"] == 90 - 6 * 3).all()
    assert set(res.settings["methods"]) == {*BASELINES, *TRANSDUCTIVE}


def test_transductive_baselines_are_deterministic_per_seed(yan):
    kw = {"k_shots": (1, 3), "n_episodes": 2, "methods": TRANSDUCTIVE, **YAN}
    a = _table(benchmark.few_shot(None, yan, seed=3, **kw))
    b = _table(benchmark.few_shot(None, yan, seed=3, **kw))
    c = _table(benchmark.few_shot(None, yan, seed=4, **kw))
    pd.testing.assert_frame_equal(a, b)
    assert not a["seed"].equals(c["seed"])


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_transductive_baselines_never_read_query_labels(yan, yan_target_data, name):
    labels = yan.obs["cell_type"].astype(str).to_numpy()
    data = yan_target_data(yan, labels)
    rng = np.random.default_rng(0)
    for episode in benchmark.make_episodes(labels, k_shots=(1, 3), n_episodes=2, seed=0):
        # Every label outside the support shuffled, then every one replaced by nonsense.
        outside = np.setdiff1d(np.arange(labels.size), episode.support)
        shuffled = labels.copy()
        shuffled[outside] = rng.permutation(labels[outside])
        assert (shuffled[episode.query] != labels[episode.query]).any()
        nonsense = labels.copy()
        nonsense[outside] = "not a class"
        probas = []
        for lab in (labels, shuffled, nonsense):
            data.labels = lab  # the same data otherwise: its PCA is computed once
            task = FewShotTask(episode, data)
            method = builtin_methods()[name]
            probas.append(method.fit_predict_proba(task, seed=episode.seed))
        for proba in probas[1:]:
            pd.testing.assert_frame_equal(proba, probas[0])


@pytest.mark.parametrize("name", TRANSDUCTIVE)
def test_transductive_probabilities_follow_task_classes(yan, yan_target_data, name):
    labels = yan.obs["cell_type"].astype(str).to_numpy()
    data = yan_target_data(yan, labels)
    episode = benchmark.make_episodes(labels, k_shots=(3,), n_episodes=1, seed=1)[0]
    task = FewShotTask(episode, data)
    proba = builtin_methods()[name].fit_predict_proba(task, seed=episode.seed)
    assert list(proba.columns) == list(task.classes)
    assert proba.shape == (episode.query.size, len(task.classes))
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, atol=1e-6)
    if name == "pca_label_spreading":
        # scikit-learn's own transduction, where the kNN graph links a query row to the
        # support; elsewhere the class of the nearest support row, never a tie.
        from sklearn.semi_supervised import LabelSpreading

        y = np.full(labels.size, -1)
        y[episode.support] = [list(task.classes).index(c) for c in labels[episode.support]]
        ls = LabelSpreading(kernel="knn", n_neighbors=7).fit(data.X_pca, y)
        reached = ls.label_distributions_[episode.query].sum(axis=1) > 0
        assert 0 < reached.sum() < reached.size  # this episode has both kinds of row
        expected = np.asarray(task.classes)[ls.transduction_[episode.query]]
        support_x = data.X_pca[episode.support]
        distances = ((data.X_pca[episode.query][:, None] - support_x[None]) ** 2).sum(-1)
        nearest = labels[episode.support][distances.argmin(axis=1)]
        expected[~reached] = nearest[~reached]
        predicted = proba.columns.to_numpy()[proba.to_numpy().argmax(axis=1)]
        np.testing.assert_array_equal(predicted, expected)
        np.testing.assert_array_equal(proba.to_numpy()[~reached].max(axis=1), 1.0)


def test_semi_supervised_method_of_the_user(yan):
    from sklearn.semi_supervised import LabelPropagation

    lp = benchmark.SemiSupervisedMethod(
        "pca_label_propagation", LabelPropagation(kernel="knn", n_neighbors=10)
    )
    # More neighbours than yan has cells: capped at n_obs - 1 for scikit-learn's kNN graph.
    wide = benchmark.SemiSupervisedMethod(
        "wide", LabelPropagation(kernel="knn", n_neighbors=500), representation="log"
    )
    assert lp.transductive and wide.transductive
    res = benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=2, methods=[lp, wide], **YAN)
    means = res.table.groupby("method")["balanced_accuracy"].mean()
    assert means["pca_label_propagation"] > 3 / 6
    assert np.isfinite(means["wide"])
    with pytest.raises(ValueError, match="representation='raw'"):
        benchmark.SemiSupervisedMethod("x", LabelPropagation(), representation="raw")


# ---------------------------------------------------------------------------------- genes
def test_bad_baseline_genes(yan):
    for bad in ("all", "Target", None):
        with pytest.raises(ValueError, match=rf"baseline_genes={bad!r}.*'model'.*'target'"):
            benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=1, baseline_genes=bad, **YAN)
    with pytest.raises(ValueError, match="baseline_genes='all'"):
        benchmark.run_default(baseline_genes="all")  # before any pre-training
    parser = build_parser()
    args = parser.parse_args(["benchmark", "--baseline-genes", "model"])
    assert args.baseline_genes == "model"
    # The target's own genes are the default of the library and of the command.
    assert parser.parse_args(["benchmark"]).baseline_genes == "target"
    for function in (benchmark.few_shot, benchmark.run_default):
        assert inspect.signature(function).parameters["baseline_genes"].default == "target"
    with pytest.raises(SystemExit):
        parser.parse_args(["benchmark", "--baseline-genes", "all"])


def test_baselines_on_target_genes_when_the_model_has_fewer(yan):
    # A model with 2,000 of yan's 20,214 genes and 50 it lacks: baselines-only methods.
    genes = [*yan.var_names[:2000], *[f"absent{i}" for i in range(50)]]
    model = _GenesOnly(genes)
    kw = {"k_shots": (1, 3), "n_episodes": 2, "seed": 2, **YAN}
    methods = [*BASELINES, *TRANSDUCTIVE]
    default = benchmark.few_shot(model, yan, methods=methods, **kw)
    on_model = benchmark.few_shot(model, yan, methods=methods, baseline_genes="model", **kw)
    on_target = benchmark.few_shot(model, yan, methods=methods, baseline_genes="target", **kw)
    # baseline_genes="target" is the default, number for number.
    pd.testing.assert_frame_equal(_table(default), _table(on_target))
    assert default.settings["baseline_genes"] == "target"
    assert on_model.settings["baseline_genes"] == "model"
    assert on_model.settings["n_genes_baselines"] == len(genes) == on_model.settings["n_genes"]
    assert on_target.settings["baseline_genes"] == "target"
    assert on_target.settings["n_genes_baselines"] == yan.n_vars
    assert on_target.settings["n_genes"] == len(genes)  # the model's genes, as before
    # On its own genes every baseline is what it is without any model.
    no_model = benchmark.few_shot(None, yan, methods=methods, **kw)
    pd.testing.assert_frame_equal(_table(on_target), _table(no_model))
    assert not _table(on_target).equals(_table(on_model))
    # The report says which genes the baselines read, only when they are the target's.
    assert f"all {yan.n_vars} of the target's own genes" in on_target.to_markdown()
    assert "own genes" not in on_model.to_markdown()
    assert "same episodes, genes and preprocessing" in on_model.to_markdown()


def test_methods_that_need_the_model_keep_its_genes(yan):
    genes = yan.var_names[:2000]
    spies = [_GeneSpy("network", needs_model=True), _GeneSpy("baseline", needs_model=False)]
    benchmark.few_shot(
        _GenesOnly(genes), yan, k_shots=(3,), n_episodes=1, methods=spies,
        baseline_genes="target", **YAN,
    )  # fmt: skip
    (network,), (baseline,) = spies[0].shapes, spies[1].shapes
    assert network == (2000, 2000, (yan.n_obs, 2000), "model")
    assert baseline == (yan.n_vars, yan.n_vars, (yan.n_obs, yan.n_vars), "target")
    # A method may ask for the model's genes without needing the model.
    spy = _ModelGenesSpy("model_genes_baseline", needs_model=False)
    benchmark.few_shot(
        _GenesOnly(genes), yan, k_shots=(3,), n_episodes=1, methods=[spy],
        baseline_genes="target", **YAN,
    )  # fmt: skip
    assert spy.shapes[0][0] == 2000 and spy.shapes[0][3] == "model"


def _with_extra_genes(target: ad.AnnData, n_extra: int = 100) -> ad.AnnData:
    """``target`` plus ``n_extra`` genes the model lacks (other genes' values, shuffled rows)."""
    rng = np.random.default_rng(0)
    x = np.asarray(target.X.toarray() if hasattr(target.X, "toarray") else target.X)
    extra = x[rng.permutation(target.n_obs)][:, :n_extra]
    var = pd.DataFrame(index=[*target.var_names, *[f"extra{i}" for i in range(n_extra)]])
    return ad.AnnData(X=np.hstack([x, extra]), obs=target.obs.copy(), var=var)


@pytest.mark.slow
def test_target_genes_beside_gtl(gtl_model, pbmc_target):
    # The shared model's genes are exactly pbmc_target's, so the option changes nothing there.
    assert list(gtl_model.gene_names) == list(pbmc_target.var_names)
    kw = {"labels_key": DEFAULT_LABELS_KEY, "k_shots": (3,), "n_episodes": 1, "seed": 1,
          "methods": ["gtl_network", "logreg", "pca_logreg"], "progress": False}  # fmt: skip
    same = benchmark.few_shot(gtl_model, pbmc_target, baseline_genes="target", **kw)
    assert same.settings["n_genes_baselines"] == pbmc_target.n_vars
    # With genes the model lacks, only the baselines change; GTL reads the model's genes.
    target = _with_extra_genes(pbmc_target)
    on_model = _table(benchmark.few_shot(gtl_model, target, baseline_genes="model", **kw))
    on_target = benchmark.few_shot(gtl_model, target, baseline_genes="target", **kw)
    assert on_target.settings["n_genes_baselines"] == target.n_vars == pbmc_target.n_vars + 100
    assert on_target.settings["n_genes"] == pbmc_target.n_vars
    pd.testing.assert_frame_equal(_rows(on_target, "gtl_network"), _rows(on_model, "gtl_network"))
    pd.testing.assert_frame_equal(_rows(on_target, "gtl_network"), _rows(same, "gtl_network"))
    assert not _rows(on_target, "pca_logreg").equals(_rows(on_model, "pca_logreg"))


def _rows(result: benchmark.FewShotResult | pd.DataFrame, method: str) -> pd.DataFrame:
    table = _table(result) if isinstance(result, benchmark.FewShotResult) else result
    return table[table["method"] == method].reset_index(drop=True)


# ---------------------------------------------------------------------------------- regimes
class _Uniform(benchmark.Method):
    """A stand-in for a fine-tuned network (needs the model): uniform probabilities, at chance."""

    needs_model = True

    def __init__(self, name: str, *, transductive: bool = False):
        self.name = name
        self.transductive = transductive

    def fit_predict_proba(self, task, *, seed):
        return np.full((task.query_indices.size, len(task.classes)), 1 / len(task.classes))


def test_regime_column_and_settings(yan):
    methods = [*BASELINES, *TRANSDUCTIVE]
    res = benchmark.few_shot(None, yan, k_shots=(3,), n_episodes=1, methods=methods, **YAN)
    expected = {"logreg": "inductive", **dict.fromkeys(PCA_BASELINES, "transductive")}
    assert res.settings["regimes"] == expected == res.regimes
    # Tidy: one regime per method, on every row of the table.
    assert res.table.groupby("method")["regime"].nunique().eq(1).all()
    assert dict(zip(res.table["method"], res.table["regime"], strict=True)) == expected
    summary = res.summary()
    assert dict(zip(summary["method"], summary["regime"], strict=True)) == expected
    # The network methods: inductive, unless adapted to the whole target first.
    builtins = builtin_methods()
    assert not any(builtins[name].transductive for name in ("gtl", "finetune", "scratch"))
    adapted = benchmark.FineTuneMethod("gtl_adapted", adapt={})
    res = benchmark.few_shot(
        _GenesOnly(yan.var_names), yan, k_shots=(3,), n_episodes=1,
        methods=[_Uniform("gtl"), _Uniform("gtl_adapted", transductive=adapted.transductive),
                 "logreg"], **YAN,
    )  # fmt: skip
    assert res.regimes == {"gtl": "inductive", "gtl_adapted": "transductive", "logreg": "inductive"}
    # A scikit-learn classifier of the user's is transductive on PCA, inductive on log.
    pca = benchmark.SklearnMethod("pca_forest", RandomForestClassifier(), representation="pca")
    log = benchmark.SklearnMethod("forest", RandomForestClassifier(), representation="log")
    assert pca.transductive and not log.transductive


def test_verdicts_compare_within_each_regime(yan):
    # gtl sits at chance; the transductive baselines are far above it. Its verdict must still
    # name the best *inductive* rival, logreg, and never a PCA baseline.
    methods = [
        _Uniform("gtl"), "logreg", "pca_logreg", "pca_self_training",
        _Uniform("gtl_adapted", transductive=True),
    ]  # fmt: skip
    res = benchmark.few_shot(
        _GenesOnly(yan.var_names), yan, k_shots=(1, 3), n_episodes=3, methods=methods, **YAN
    )
    assert (res.reference, res.transductive_reference) == ("gtl", "gtl_adapted")
    means = res.table.groupby("method")["balanced_accuracy"].mean()
    assert means["pca_self_training"] > means["logreg"] - 0.05 > means["gtl"] + 0.5
    comparisons = res.comparisons()
    inductive = comparisons[comparisons["regime"] == "inductive"]
    transductive = comparisons[comparisons["regime"] == "transductive"]
    assert set(inductive["method"]) == {"logreg"} and set(inductive["reference"]) == {"gtl"}
    assert set(transductive["method"]) == {"pca_logreg", "pca_self_training"}
    assert set(transductive["reference"]) == {"gtl_adapted"}
    lines = res.verdicts(regime="inductive")
    assert [line.split(":")[0] for line in lines] == ["k=1", "k=3"]
    assert all("gtl" in line and "best baseline, logreg" in line for line in lines)
    assert not any("pca_" in line for line in lines)
    best = res.summary().set_index(["k", "method"])["mean"]
    for k, line in zip((1, 3), res.verdicts(regime="transductive"), strict=True):
        rival = max(("pca_logreg", "pca_self_training"), key=lambda m: best[(k, m)])
        assert line.startswith(f"k={k}: gtl_adapted") and f"best baseline, {rival} " in line
    assert res.verdicts() == [*lines, *res.verdicts(regime="transductive")]
    # The summary marks the best rival of each regime, and differences within it.
    summary = res.summary()
    flagged = summary[summary["best_baseline"]]
    assert set(flagged.loc[flagged["regime"] == "inductive", "method"]) == {"logreg"}
    assert summary.loc[summary["method"].isin(["gtl", "gtl_adapted"]), "difference"].isna().all()
    assert summary.loc[summary["method"] != "gtl_adapted", "difference"].notna().sum() == 6
    # The report: both sections, each against its own reference.
    md = res.to_markdown()
    inductive_part, transductive_part = md.split("## Inductive")[1].split("## Transductive")
    assert "learn from the support set alone" in inductive_part
    assert "Paired difference `gtl` − method" in inductive_part
    assert "pca_logreg" not in inductive_part and "gtl_adapted" not in inductive_part
    assert "never their labels" in transductive_part
    assert "Paired difference `gtl_adapted` − method" in transductive_part
    assert "| logreg |" not in transductive_part.split("## Macro F1")[0]
    assert "[inductive] k=1: gtl " in repr(res) and "[transductive] k=1: gtl_adapted" in repr(res)
    with pytest.raises(ValueError, match="regime='both'"):
        res.verdicts(regime="both")


def test_references_by_default_and_bad_references(yan):
    model = _GenesOnly(yan.var_names)
    kw = {"k_shots": (3,), "n_episodes": 1, **YAN}

    def references(methods, **kwargs):
        res = benchmark.few_shot(model, yan, methods=methods, **kw, **kwargs)
        return res.reference, res.transductive_reference

    adapted, named = _Uniform("net_adapted", transductive=True), "gtl_transductive"
    # "gtl_transductive" first when it runs, else the first transductive network.
    assert references([_Uniform("gtl"), "pca_logreg", adapted]) == ("gtl", "net_adapted")
    assert references([adapted, _Uniform(named, transductive=True), "logreg"]) == (None, named)
    # Without gtl, the first inductive network; with baselines only, no reference at all.
    assert references(["logreg", _Uniform("finetune"), "pca_knn"]) == ("finetune", None)
    assert references(["logreg", "pca_knn"]) == (None, None)
    assert references(["logreg", "pca_knn"], reference="logreg") == ("logreg", None)
    assert references([_Uniform("gtl"), adapted], reference=None) == (None, "net_adapted")
    # A reference that is given must run, and be of its regime.
    for kwargs, match in [
        ({"reference": "gtl_adapted"}, r"reference='gtl_adapted' is not one of the methods"),
        ({"transductive_reference": "gtl_adapted"}, "'gtl_adapted' is not one of the methods"),
        ({"reference": "net_adapted"}, "'net_adapted' is a transductive method.*"
         "transductive_reference='net_adapted'"),
        ({"transductive_reference": "gtl"}, "'gtl' is an inductive method.*reference='gtl'"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            references([_Uniform("gtl"), adapted, "logreg"], **kwargs)
    # A result built by hand is checked the same way.
    table = pd.DataFrame(
        {"method": ["gtl", "pca_knn"], "regime": ["inductive", "transductive"], "k": 1,
         "episode": 0, "n_classes": 2, "balanced_accuracy": 0.5, "fit_seconds": 0.1}
    )  # fmt: skip
    with pytest.raises(ValueError, match="reference='pca_knn'.*transductive"):
        benchmark.FewShotResult(table, reference="pca_knn")
    with pytest.raises(ValueError, match="transductive_reference='gtl'.*inductive"):
        benchmark.FewShotResult(table, reference=None, transductive_reference="gtl")


def test_baselines_read_the_target_genes_by_default(yan):
    # A model with 2,000 of yan's genes and 50 it lacks; the logreg baseline, by default, fits
    # on all of yan's own genes, and the network on the model's.
    genes = [*yan.var_names[:2000], *[f"absent{i}" for i in range(50)]]
    shapes = []

    class _LogregSpy(benchmark.SklearnMethod):
        def fit_predict_proba(self, task, *, seed):
            shapes.append((task.X_support.shape[1], task.X_query.shape[1]))
            return super().fit_predict_proba(task, seed=seed)

    logreg = _LogregSpy("logreg", builtin_methods()["logreg"].estimator, representation="log")
    network = _GeneSpy("network", needs_model=True)
    res = benchmark.few_shot(
        _GenesOnly(genes), yan, k_shots=(3,), n_episodes=1, methods=[network, logreg], **YAN
    )
    assert shapes == [(yan.n_vars, yan.n_vars)]
    assert network.shapes[0][:2] == (len(genes), len(genes))
    assert res.settings["baseline_genes"] == "target"
    assert res.settings["n_genes_baselines"] == yan.n_vars != len(genes)
    assert f"all {yan.n_vars} of the target's own genes" in res.to_markdown()


def test_plot_draws_transductive_methods_dashed(yan):
    import matplotlib.pyplot as plt

    res = benchmark.few_shot(
        None, yan, k_shots=(1, 3), n_episodes=2, methods=["logreg", "pca_knn"], **YAN
    )
    fig = res.plot()
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert lines["logreg"].get_linestyle() == "-"
    assert lines["pca_knn (transductive)"].get_linestyle() == "--"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "pca_knn (transductive)" in legend and "logreg" in legend
    plt.close(fig)
