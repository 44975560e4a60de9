"""The simulator, the trace generators and the autoscale CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deploylab.autoscale import SimulationConfig, generate_trace, simulate
from deploylab.autoscale.simulate import compare_policies
from deploylab.cli import main


def test_traces_have_daily_weekly_and_flash_crowd_shapes():
    trace = generate_trace("diurnal", days=7, noise=0)
    days = trace.reshape(7, 1440)
    assert days[:, 14 * 60].min() > days[:, 2 * 60].max()  # afternoons > nights
    assert days[5:].mean() < 0.7 * days[:5].mean()  # quieter weekend
    flash = generate_trace("flash-crowd", days=7, noise=0)
    start = (2 * 24 + 11) * 60
    assert flash[start + 5] > 2.5 * trace[start + 5]  # x3 within minutes
    assert flash[start + 300] < 1.1 * trace[start + 300]  # faded after 5 h
    noisy = generate_trace("diurnal", seed=3)
    assert np.array_equal(noisy, generate_trace("diurnal", seed=3))
    assert not np.array_equal(noisy, generate_trace("diurnal", seed=4))
    with pytest.raises(ValueError, match="trace kind 'weekly'"):
        generate_trace("weekly")


def test_constant_load_fixed_fleet_matches_formulas():
    # 4 instances x 100 req/s, 200 req/s: utilisation 0.5, M/M/1 latency = 50 / (1 - 0.5)
    result = simulate([200.0] * 120, policy="maintain", min_size=4, max_size=4)
    assert np.allclose(result.cpu, 50)
    assert np.allclose(result.latency_ms, 100)
    assert result.metrics["slo_violation_fraction"] == 0
    assert result.metrics["instance_hours"] == pytest.approx(4 * 2)  # 4 instances, 2 hours
    assert result.metrics["cost_usd"] == pytest.approx(8 * 0.0104)


def test_target_tracking_settles_where_the_formula_says():
    demand = [100.0] * 60 + [1000.0] * 240
    result = simulate(demand, policy="target", target=50, min_size=1, max_size=50, initial=2)
    # 1000 req/s at 50% of 100 req/s per instance -> 20 instances
    assert result.in_service[-1] == 20
    assert result.metrics["scaling_activities"] >= 1
    # and back in (after 15 low minutes) when load drops
    back = simulate(demand[::-1], policy="target", target=50, min_size=1, max_size=50, initial=20)
    assert back.in_service[-1] == 2  # ceil(100 / 50)


def test_failures_are_replaced_and_capacity_comes_back():
    config = SimulationConfig(
        policy="maintain",
        min_size=6,
        max_size=6,
        boot_time=120,
        health_check_grace=0,
        failures=((600.0, 2),),
    )
    result = simulate([300.0] * 60, config)
    assert result.in_service[9] == 6 and result.in_service[10] == 4
    assert result.in_service[-1] == 6
    assert result.unhealthy.max() >= 1


def test_cooldown_slows_simple_scaling():
    demand = [100.0] * 30 + [2000.0] * 120
    fast = simulate(demand, policy="simple", cooldown=0, max_size=40)
    slow = simulate(demand, policy="simple", cooldown=600, max_size=40)
    assert fast.in_service[-1] > slow.in_service[-1]


def test_compare_policies_on_one_trace():
    trace = generate_trace("flash-crowd", days=2)
    table = compare_policies(trace, ("target", "maintain"))
    assert table["maintain"]["slo_violation_fraction"] > table["target"]["slo_violation_fraction"]
    assert table["maintain"]["instance_hours"] < table["target"]["instance_hours"]


def test_scheduled_policy_follows_business_hours():
    result = simulate(generate_trace("diurnal", days=1), policy="scheduled")
    assert result.desired[9 * 60] > result.desired[7 * 60]  # raised at 08:00
    assert result.desired[23 * 60] == result.config.min_size  # back at 22:00


def test_bad_config_names_the_value():
    with pytest.raises(ValueError, match="policy 'fast'"):
        SimulationConfig(policy="fast")
    with pytest.raises(ValueError, match="negative"):
        simulate([1.0, -1.0])


def test_cli_simulate_json_and_text(capsys):
    assert main(["autoscale", "simulate", "--policy", "step", "--days", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["policy"] == "step"
    assert 0 <= data["metrics"]["timeshare_under"] <= 1
    assert math.isfinite(data["metrics"]["jitter"])
    assert main(["autoscale", "simulate", "--trace", "spike", "--days", "0.5"]) == 0
    assert "under-provisioning accuracy" in capsys.readouterr().out
    assert main(["autoscale", "simulate", "--trace", "/nonexistent.csv"]) == 2
    assert "'/nonexistent.csv'" in capsys.readouterr().err


def test_cli_trace_from_csv(tmp_path, capsys):
    path = tmp_path / "trace.csv"
    path.write_text("# requests/s per minute\n" + "\n".join(["100"] * 30 + ["900"] * 30))
    assert main(["autoscale", "simulate", "--trace", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["steps"] == 60


def test_bench_prints_the_timing(capsys):
    assert main(["bench", "autoscale", "--repeat", "1"]) in (0, 1)
    out = capsys.readouterr().out
    assert "10,080 steps" in out and "target" in out


def test_hpa_policy_in_the_simulator_settles_and_stabilizes_scale_down():
    demand = [100.0] * 30 + [1000.0] * 120 + [100.0] * 30
    result = simulate(demand, policy="hpa", target=50, min_size=1, max_size=50, initial=2)
    assert result.in_service[149] == 20  # 1000 / (100 x 50%)
    # after the drop the 300 s stabilization window keeps 20 for at least 5 minutes
    assert (result.desired[150:154] == 20).all()
    assert result.desired[-1] < 20


def test_warm_up_keeps_start_up_bursts_out_of_the_metric():
    demand = [300.0] * 60 + [1000.0] * 240
    runs = {
        warmup: simulate(
            demand,
            policy="target",
            target=50,
            boot_time=60,
            warmup=warmup,
            startup_cpu=95,
            startup_seconds=240,
            max_size=60,
        )
        for warmup in (0, 300)
    }
    # the right answer is 1000 / (100 x 50%) = 20 instances
    assert runs[300].metrics["max_instances"] == 20
    assert runs[0].metrics["max_instances"] > 30  # bursts read as load: over-scaling
