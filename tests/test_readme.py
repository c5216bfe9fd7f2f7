"""The README's quickstart runs as written and gives a classifier well above chance."""

import re
from pathlib import Path

from sklearn.metrics import balanced_accuracy_score

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(blocks[0], "README quickstart", "exec"), namespace)
    target, clf = namespace["target"], namespace["clf"]
    assert {"scgtl_prediction", "scgtl_confidence"} <= set(target.obs)
    assert {"scgtl_proba", "X_scgtl"} <= set(target.obsm)
    query = ~target.obs_names.isin(clf.fit_record_["support_obs_names"])
    score = balanced_accuracy_score(
        target.obs["bulk_labels"][query], target.obs["scgtl_prediction"][query]
    )
    assert clf.fit_record_["k_shot"] == 5 and len(clf.classes_) == 10
    assert score > 0.5  # 10 classes: chance is 0.1
