"""How long the README's Quickstart takes, run as written.

The page's ```python blocks run in order in a fresh process, in a temporary folder; the wall
time of the whole page is printed. Run it alone, with no other heavy job on the machine, and
quote the result where the page states its time. (The tutorials are notebooks, executed and
checked by ``tests/test_tutorials.py``.)

    python benchmarks/docs_timing.py
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = {
    "README Quickstart": (REPO / "README.md", 1),
}


def page_code(path: Path, n_blocks: int | None) -> str:
    """The page's python blocks, in order (the first ``n_blocks`` of them, or all)."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    return "import matplotlib\nmatplotlib.use('Agg')\n" + "\n".join(blocks[:n_blocks])


def main() -> None:
    # No options; the parser answers --help instead of running the page.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    for name, (path, n_blocks) in PAGES.items():
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", page_code(path, n_blocks)],
                cwd=folder,
                check=True,
                capture_output=True,
            )
            print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
