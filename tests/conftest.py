"""Shared fixtures: free ports, processes that are always stopped, tools that may be missing;
and which part of the full run each test file belongs to (:data:`RUN_PARTS`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploylab import loopback
from deploylab.loopback import free_port

__all__ = ["free_port", "require_root", "require_tool", "seconds_left", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"

#: ``tools/test.sh`` runs the whole suite as three pytest processes, chosen by the environment
#: variable ``DEPLOYLAB_TEST_PART``: "waiting" and "rest" at the same time (the first mostly
#: waits on Chromium, kernels and JupyterLab, so the two together fill the machine's cores),
#: then "alone": tests whose assertions need the machine to themselves (load that must raise a
#: backend's CPU, requests counted while backends change). A file not named here is "rest".
#: The notebook tests go with the export test: both use the lessons the session ran once. The
#: classroom's browser test goes with the other hub tests, which balances the two (about
#: 25 min each with two more engineers loading the machine).
RUN_PARTS = {
    "waiting": {
        "test_browser.py",
        "test_export_html.py",
        "test_lite.py",
        "test_notebooks.py",
        "test_vpc_browser.py",
        "test_workbook_browser.py",
    },
    "alone": {"test_autoscale_live.py", "test_balancer_runtime.py", "test_deploy.py"},
}
RUN_PART_VARIABLE = "DEPLOYLAB_TEST_PART"


def run_part(path: Path) -> str:
    """The part of the full run that the tests in ``path`` belong to."""
    return next((part for part, names in RUN_PARTS.items() if path.name in names), "rest")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the tests of the part ``DEPLOYLAB_TEST_PART`` names (all when it is unset)."""
    wanted = os.environ.get(RUN_PART_VARIABLE)
    if not wanted:
        return
    known = [*RUN_PARTS, "rest"]
    if wanted not in known:
        raise pytest.UsageError(f"{RUN_PART_VARIABLE}={wanted!r}: expected one of {known}")
    keep = [item for item in items if run_part(item.path) == wanted]
    dropped = [item for item in items if run_part(item.path) != wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep


#: When pytest-timeout's clock started for a test (``time.monotonic()``) and its limit in
#: seconds (0: no limit).
TIMEOUT_CLOCK = pytest.StashKey[tuple[float, float]]()


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> None:
    """Note when pytest-timeout's clock starts for ``item``, and its limit, for
    :func:`seconds_left`. Returns nothing, so pytest-timeout then sets its timer as usual."""
    item.stash[TIMEOUT_CLOCK] = (time.monotonic(), float(settings.timeout or 0))


def seconds_left(
    request: pytest.FixtureRequest, keep: float = 45.0, at_most: float = 900.0
) -> float:
    """How long a wait in the running test may last so that the test still fails by itself,
    with ``keep`` seconds left to save what it saw, before pytest-timeout stops it (at most
    ``at_most``). pytest-timeout's stop is no ``Exception``: it skips the test's own
    ``except``, so a test killed by it leaves no screenshot and no account of what hung."""
    started, limit = request.node.stash.get(TIMEOUT_CLOCK, (0.0, 0.0))
    if not limit:
        return at_most
    return max(1.0, min(at_most, started + limit - keep - time.monotonic()))


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts connections on ``host:port`` or fail the test."""
    try:
        loopback.wait_for_port(port, host, timeout)
    except TimeoutError as error:
        pytest.fail(str(error))


def require_tool(command: str, debian_package: str | None = None) -> str:
    """Path of ``command``, or skip the test naming the Debian package that provides it.
    CI (.ci/run) installs every such package, so these tests do run there."""
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(
                f"{command} is missing on CI: .ci/run must install {debian_package or command}"
            )
        pytest.skip(f"{command} not installed (apt-get install {debian_package or command})")
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root; this test must not be skipped there")
        pytest.skip("needs root (network namespaces)")


class ProcessGroup:
    """Processes a test starts; every one is stopped by PID when the test ends."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, *command: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.PIPE)
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def deploylab(self, *arguments: str, **kwargs) -> subprocess.Popen:
        """Start ``deploylab ARGUMENTS`` with this interpreter."""
        return self.start(sys.executable, "-m", "deploylab.cli", *arguments, **kwargs)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@pytest.fixture
def processes():
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
