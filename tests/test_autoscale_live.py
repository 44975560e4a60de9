"""A live run with real backend processes: scales out, back in, replaces a killed process,
and leaves no process behind."""

from __future__ import annotations

import psutil
import pytest

from deploylab.autoscale.live import LiveConfig, offered_load, run_live
from deploylab.events import EventBus


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_live_run_scales_out_and_in_and_replaces_a_killed_process():
    config = LiveConfig(
        duration=9,
        period=0.25,
        target=30,
        min_size=1,
        max_size=3,
        warmup=0.5,
        cooldown=0.5,
        work_ms=10,
        low_rps=4,
        peak_rps=100,
        high_datapoints=2,
        low_datapoints=3,
        kill_at=2.0,
    )
    bus = EventBus("autoscaler")
    seen = []
    bus.subscribe(lambda event: seen.append(event.kind))
    result = run_live(config, bus)
    kinds = [event["kind"] for event in result.events]
    scalings = [e for e in result.events if e["kind"] == "scaling"]
    assert any(e["desired_to"] > e["desired_from"] for e in scalings), result.samples
    assert any(e["desired_to"] < e["desired_from"] for e in scalings), result.samples
    assert result.max_in_service >= 2
    assert result.samples[-1]["desired"] == config.min_size
    # the killed process was noticed and replaced without any cooldown
    assert "killed" in kinds and "unhealthy" in kinds
    killed = next(e for e in result.events if e["kind"] == "killed")
    launches_after = [e for e in result.events if e["kind"] == "launch" and e["t"] >= killed["t"]]
    assert launches_after, result.events
    assert len(result.started_pids) >= 3
    assert result.requests_ok > 100
    assert not [pid for pid in result.started_pids if alive(pid)]
    assert "sample" in seen  # live charts get one sample per period


def test_offered_load_pattern_is_bounded():
    config = LiveConfig(duration=10, low_rps=5, peak_rps=50)
    rates = [offered_load(t / 10, config) for t in range(100)]
    assert max(rates) == 50 and min(rates) == 5
    assert rates[-1] == 5  # ends low so the group scales back in


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy": "magic"}, "live policy 'magic'"),
        ({"max_size": 40}, "max_size 40"),
        ({"duration": 3600}, "duration 3600"),
    ],
)
def test_live_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        LiveConfig(**changes)


@pytest.mark.slow
def test_live_cli_runs_bounded_and_reports(capsys):
    import json

    from deploylab.cli import main

    assert main(["autoscale", "live", "--duration", "3", "--period", "0.25", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["samples"] and data["requests_ok"] > 0
    assert not [pid for pid in data["started_pids"] if alive(pid)]


def test_killing_while_a_launch_is_still_reserved_kills_nothing_and_raises_nothing():
    """The lesson's "kill one" button can be pressed while an instance's process is still
    being started: its slot is reserved (None) until the launch fills it. The button must
    then pick no process rather than fail on the empty slot."""
    from deploylab.autoscale.controller import LiveAutoscaler

    autoscaler = LiveAutoscaler(LiveConfig())
    autoscaler.processes["i-reserved"] = None
    assert autoscaler.kill_one() is None


def test_the_clock_of_an_autoscaler_that_is_not_running_says_so():
    from deploylab.autoscale.controller import LiveAutoscaler

    with pytest.raises(RuntimeError, match=r"not running: call run\(\) first"):
        LiveAutoscaler(LiveConfig()).now()
