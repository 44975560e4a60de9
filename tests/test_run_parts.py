"""The full run's parts (``RUN_PARTS`` in conftest.py) name real files, once each."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, RUN_PART_VARIABLE, RUN_PARTS, run_part


def test_every_file_a_part_names_exists_and_belongs_to_one_part():
    named = [name for names in RUN_PARTS.values() for name in names]
    assert len(named) == len(set(named)), f"a file is in two parts: {sorted(named)}"
    missing = [name for name in named if not (ROOT / "tests" / name).is_file()]
    assert not missing, f"RUN_PARTS names files that are gone (renamed?): {missing}"
    assert run_part(ROOT / "tests" / "test_browser.py") == "waiting"
    assert run_part(ROOT / "tests" / "test_http_parser.py") == "rest"


def test_an_unknown_part_is_refused_with_the_parts_there_are():
    environment = dict(os.environ, **{RUN_PART_VARIABLE: "quick"})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_run_parts.py"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "'quick'" in result.stderr + result.stdout
    assert "waiting" in result.stderr + result.stdout
