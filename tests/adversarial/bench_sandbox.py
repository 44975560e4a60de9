"""Seconds per notebook (kernel start + run + stop): plain nbclient vs run_notebook without
and with the sandbox. Run: ``.venv/bin/python tests/adversarial/bench_sandbox.py [ROUNDS]``.

Not a test: it prints figures (noisy on a shared 2-core machine: look at the medians).
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(rounds: int = 8) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    from deploylab.grading.execute import run_notebook

    lab = nbformat.read(ROOT / "autograder" / "source" / "ip-basics" / "ip-basics.ipynb", 4)
    trivial = new_notebook(cells=[new_code_cell("1 + 1")])
    trivial.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}

    def plain(notebook) -> None:
        directory = tempfile.mkdtemp(prefix="bench-plain-")
        client = NotebookClient(
            copy.deepcopy(notebook),
            timeout=30,
            allow_errors=True,
            resources={"metadata": {"path": directory}},
        )
        client.execute()

    def ours(notebook, sandbox: bool) -> None:
        outcome = run_notebook(notebook, Path(tempfile.mkdtemp(prefix="bench-")), sandbox=sandbox)
        assert outcome.status == "graded", (outcome.status, outcome.detail, outcome.tamper)

    for label, notebook in (("one trivial cell", trivial), ("ip-basics, instructor", lab)):
        runs = (
            ("plain nbclient", lambda nb=notebook: plain(nb)),
            ("run_notebook, no sandbox", lambda nb=notebook: ours(nb, False)),
            ("run_notebook, sandbox", lambda nb=notebook: ours(nb, True)),
        )
        for name, run in runs:
            run()  # warm the file cache
            seconds = []
            for _ in range(rounds):
                started = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - started)
            print(
                f"{label:22} {name:26} median {statistics.median(seconds):.3f} s"
                f"  min {min(seconds):.3f} s  ({rounds} runs)",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
