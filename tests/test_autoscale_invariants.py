"""Invariants under random traces: limits, cooldowns, warm-up and health replacement.

The loop here drives the public core (group.step → observe → decide → apply) itself, so each
property is checked at every step, not only on the simulator's summary.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploylab.autoscale import (
    IN_SERVICE,
    AutoScalingGroup,
    LaunchTemplate,
    simulate,
)
from deploylab.autoscale.simulate import SimulationConfig, build_policies

POLICIES = ("target", "step", "simple", "predictive")

traces = st.lists(
    st.floats(min_value=0, max_value=3000, allow_nan=False), min_size=20, max_size=200
)
configs = st.fixed_dictionaries(
    {
        "policy": st.sampled_from(POLICIES),
        "min_size": st.integers(0, 3),
        "extra": st.integers(0, 12),
        "cooldown": st.sampled_from([0.0, 60.0, 300.0]),
        "warmup": st.sampled_from([0.0, 60.0, 300.0]),
        "boot_time": st.sampled_from([0.0, 60.0, 180.0]),
        "target": st.floats(20, 90),
    }
)


def run(trace, params, failures=()):
    config = SimulationConfig(
        policy=params["policy"],
        min_size=params["min_size"],
        max_size=params["min_size"] + params["extra"] + 1,
        cooldown=params["cooldown"],
        warmup=params["warmup"],
        boot_time=params["boot_time"],
        target=params["target"],
        health_check_grace=0.0,
    )
    template = LaunchTemplate(capacity=config.capacity, boot_time=config.boot_time)
    group = AutoScalingGroup(
        template,
        config.min_size,
        config.max_size,
        config.min_size,
        health_check_grace_period=0,
        default_cooldown=config.cooldown,
        instance_warmup=config.warmup,
        now=-1000,
    )
    group.step(-500)
    policies = build_policies(config)
    failures = dict(failures)
    log = []
    for i, load in enumerate(trace):
        now = i * 60.0
        group.step(now)
        if i in failures:
            victims = [x.id for x in group.instances if x.state == IN_SERVICE]
            for victim in victims[: failures[i]]:
                group.mark_unhealthy(victim, now)
        observation = group.observe(now, None, load)
        if observation.ready:
            observation.metric = min(100.0, 100 * load / (observation.in_service * 100.0))
        decision = None
        from deploylab.autoscale import decide

        decision = decide(policies, observation)
        before = group.desired_capacity
        if decision is not None:
            group.apply(decision, now)
        log.append((now, observation, decision, before, group.desired_capacity))
    return group, config, log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces, params=configs)
def test_desired_stays_within_min_and_max(trace, params):
    _group, config, log = run(trace, params)
    for _, _, _, _, desired in log:
        assert config.min_size <= desired <= config.max_size


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces, params=configs)
def test_no_scale_in_while_instances_warm_up(trace, params):
    _, _, log = run(trace, params)
    for _, observation, decision, before, after in log:
        if after < before:
            assert observation.warming == 0 or decision.policy.startswith("simple"), (
                observation,
                decision,
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces, params=configs)
def test_simple_scaling_respects_activity_plus_cooldown(trace, params):
    params = {**params, "policy": "simple"}
    _, config, log = run(trace, params)
    changes = [(now, observation) for now, observation, _, before, after in log if after != before]
    for (first, _), (second, observation) in itertools.pairwise(changes):
        # the second change was allowed only once the first activity ended and the cooldown
        # passed: at least the cooldown after the first decision
        assert second - first >= config.cooldown
        assert not observation.cooldown_active


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 25), failed=st.integers(1, 25), boot=st.sampled_from([0, 60, 120]))
def test_health_replacement_restores_capacity(size, failed, boot):
    group = AutoScalingGroup(
        LaunchTemplate(boot_time=boot), size, size, size, health_check_grace_period=0, now=-1000
    )
    group.step(0)
    victims = [x.id for x in group.instances if x.state == IN_SERVICE][:failed]
    for victim in victims:
        group.mark_unhealthy(victim, now=0)
    batch = max(1, size // 10)
    now = 0
    for _ in range(200):
        now += 30
        group.step(now)
        replacing = sum(1 for x in group.instances if x.replacement and x.state == "Pending")
        assert replacing <= batch
        assert len(group.active) == size  # unhealthy ones count until replaced
    assert group.count(IN_SERVICE) == size


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces, params=configs, when=st.integers(0, 19), count=st.integers(1, 5))
def test_simulator_keeps_limits_with_failures(trace, params, when, count):
    result = simulate(
        trace,
        SimulationConfig(
            policy=params["policy"],
            min_size=params["min_size"],
            max_size=params["min_size"] + params["extra"] + 1,
            boot_time=params["boot_time"],
            failures=((when * 60.0, count),),
        ),
    )
    assert (result.desired >= result.config.min_size).all()
    assert (result.desired <= result.config.max_size).all()
    assert (result.in_service + result.pending <= result.config.max_size).all()
    assert 0 <= result.metrics["timeshare_under"] <= 1
