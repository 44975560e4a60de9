"""The full run's parts (``RUN_PARTS`` in conftest.py) name real files, once each; and a
test's own waits can end before pytest-timeout stops it (``seconds_left``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, RUN_PART_VARIABLE, RUN_PARTS, run_part, seconds_left


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


@pytest.mark.timeout(100)
def test_seconds_left_counts_down_pytest_timeouts_clock(request):
    time.sleep(0.5)
    left = seconds_left(request, keep=10)
    assert 100 - 10 - 5 < left <= 100 - 10 - 0.5  # the clock started before this test's body
    assert seconds_left(request, keep=10, at_most=30) == 30
    assert seconds_left(request, keep=1000) == 1.0  # never a zero or negative wait
