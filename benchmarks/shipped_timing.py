"""Seconds from a fresh process to a predicted study, starting from the shipped model (issue 24).

Runs, in a new Python process: ``import scgtl``, ``scgtl.models.load`` of the shipped model,
reading a study, ``fine_tune(k_shot=5)`` and ``predict``, each timed, and the total from before
the import. The study is one of the data mirror's (``$SCGTL_DATA_DIR``); run it alone.

    python benchmarks/shipped_timing.py --study kang_stim --labels-key stim
    python benchmarks/shipped_timing.py --study mudan_ref --labels-key cell_type
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import time
start = time.perf_counter()
import scgtl
scgtl.settings.progress_bar = False
steps = {{"import": time.perf_counter() - start}}
def step(name, since):
    steps[name] = time.perf_counter() - since
    return time.perf_counter()
t = time.perf_counter()
model = scgtl.models.load(scgtl.models.DEFAULT_MODEL)
t = step("load", t)
study = getattr(scgtl.datasets, {study!r})(download=False)
t = step("read", t)
clf = model.fine_tune(study, labels_key={labels_key!r}, k_shot=5, seed=0)
t = step("fine_tune", t)
clf.predict(study)
t = step("predict", t)
steps["total"] = time.perf_counter() - start
steps["n_obs"] = study.n_obs
import json; print(json.dumps(steps))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="mudan_ref")
    parser.add_argument("--labels-key", default="cell_type")
    args = parser.parse_args()
    code = CHILD.format(study=args.study, labels_key=args.labels_key)
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    )
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps({k: round(v, 2) for k, v in steps.items()}, indent=1))


if __name__ == "__main__":
    main()
