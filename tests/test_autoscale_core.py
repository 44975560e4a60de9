"""The worked examples of shared/reference/autoscaling.md, and AWS/Kubernetes rules around them."""

from __future__ import annotations

import math

import pytest

from deploylab import autoscale
from deploylab.autoscale import (
    ALARM,
    IN_SERVICE,
    INSUFFICIENT_DATA,
    OK,
    PENDING,
    Alarm,
    AutoScalingGroup,
    CapacityError,
    Cron,
    HorizontalPodAutoscaler,
    HPAScalingPolicy,
    HPAScalingRules,
    LaunchTemplate,
    Observation,
    PredictivePolicy,
    ScheduledAction,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
    decide,
    elasticity_metrics,
    hpa_desired,
    step_adjustment,
    target_tracking_desired,
)

PCT = "PercentChangeInCapacity"


def observe(
    desired, metric, warming=0, now=0.0, min_size=0, max_size=100, cooldown=False, load=0.0
):
    return Observation(
        now,
        desired,
        min_size,
        max_size,
        desired - 0,
        desired - warming,
        warming,
        metric,
        load,
        cooldown,
    )


# ------------------------------------------------------------------ step adjustments
@pytest.mark.parametrize(
    ("current", "percent", "expected_change"),
    [
        (10, 20, 2),  # v > 1: floor
        (11, 30, 3),  # 3.3 -> 3
        (10, 5, 1),  # 0 < v < 1 -> 1
        (10, -5, -1),  # -1 < v < 0 -> -1
        (14, -10, -1),  # -1.4 -> -1 (toward zero)
        (13, -30, -3),  # -3.9 -> -3
        (10, 10, 1),  # exactly 1
        (0, 50, 0),  # nothing to take a percentage of
    ],
)
def test_percent_change_rounds_like_aws(current, percent, expected_change):
    assert step_adjustment(current, PCT, percent) == current + expected_change


def test_adjustment_types():
    assert step_adjustment(10, "ChangeInCapacity", 3) == 13
    assert step_adjustment(10, "ChangeInCapacity", -4) == 6
    assert step_adjustment(10, "ExactCapacity", 2) == 2


def test_min_adjustment_magnitude_raises_small_percentage_changes():
    # reference: +25% of 4 = 1, with MinAdjustmentMagnitude 2 -> +2
    assert step_adjustment(4, PCT, 25) == 5
    assert step_adjustment(4, PCT, 25, min_adjustment_magnitude=2) == 6
    assert step_adjustment(4, PCT, -25, min_adjustment_magnitude=2) == 2
    assert step_adjustment(20, PCT, 50, min_adjustment_magnitude=2) == 30  # already large


@pytest.mark.parametrize("bad", [("Bigger", 1), ("ExactCapacity", -1), ("ChangeInCapacity", 1.5)])
def test_bad_adjustments_name_the_value(bad):
    with pytest.raises(ValueError, match=str(bad[0] if bad[0] == "Bigger" else bad[1])):
        step_adjustment(4, *bad)


def reference_step_policies():
    # threshold 50; +10% for [60,70), +30% for [70,inf); -10% for (30,40], -30% for (-inf,30]
    out = StepScalingPolicy(
        Alarm(50, ">"), [Step(0, 10, 0), Step(10, 20, 10), Step(20, None, 30)], PCT
    )
    scale_in = StepScalingPolicy(
        Alarm(50, "<"), [Step(-10, 0, 0), Step(-20, -10, -10), Step(None, -20, -30)], PCT
    )
    return [out, scale_in]


def test_reference_step_sequence():
    policies = reference_step_policies()
    desired = 10
    for metric, expected in [(60, 11), (70, 14), (40, 13), (30, 10)]:
        decision = decide(policies, observe(desired, metric))
        assert decision is not None and decision.desired == expected, (metric, decision)
        desired = decision.desired


def test_step_bounds_are_inclusive_on_the_threshold_side():
    out, scale_in = reference_step_policies()
    # above: [lower, upper): 70 is in [70, inf) -> +30%, 69.9 in [60,70) -> +10%
    assert out.evaluate(observe(10, 70)).desired == 13
    assert out.evaluate(observe(10, 69.9)).desired == 11
    # below: (lower, upper]: 40 is in (30,40] -> -10%; 30 is in (-inf,30] -> -30%
    assert scale_in.evaluate(observe(10, 40)).desired == 9
    assert scale_in.evaluate(observe(10, 30)).desired == 7


def test_repeated_breaches_in_the_same_step_do_not_stack_while_warming():
    out, _ = reference_step_policies()
    first = out.evaluate(observe(10, 60))
    assert first.desired == 11
    # one instance is warming: it counts toward current capacity, same step -> nothing
    assert out.evaluate(observe(11, 60, warming=1)) is None
    # a bigger step while warming adds only the difference: 10 + 30% = 13
    assert out.evaluate(observe(11, 70, warming=1)).desired == 13


def test_no_scale_in_during_warm_up():
    _, scale_in = reference_step_policies()
    assert scale_in.evaluate(observe(10, 30, warming=1)) is None
    assert scale_in.evaluate(observe(10, 30)).desired == 7


def test_alarm_in_alarm_reinvokes_the_step_every_period():
    out = StepScalingPolicy(Alarm(50, ">", evaluation_periods=2), [Step(0, None, 1)])
    assert out.evaluate(observe(3, 90)) is None  # 1 of 2 datapoints
    assert out.evaluate(observe(3, 90)).desired == 4  # ALARM
    assert out.evaluate(observe(4, 90)).desired == 5  # still ALARM next period


@pytest.mark.parametrize(
    "steps",
    [
        [Step(0, 10, 1), Step(5, None, 2)],  # overlap
        [Step(0, 10, 1), Step(20, None, 2)],  # gap
        [Step(None, 10, 1), Step(None, 20, 2)],  # two open lower bounds
    ],
)
def test_step_bounds_without_gaps_or_overlaps(steps):
    with pytest.raises(ValueError, match=r"overlap|gap"):
        StepScalingPolicy(Alarm(50, ">"), steps)


# ------------------------------------------------------------------ alarms
def test_cpu_above_80_for_5_minutes():
    alarm = Alarm(
        threshold=80,
        comparison="GreaterThanThreshold",
        period=60,
        evaluation_periods=5,
        datapoints_to_alarm=5,
    )
    assert alarm.evaluate([81, 85, 90, 95, 99]) == ALARM
    assert alarm.evaluate([81, 85, 80, 95, 99]) == OK  # 80 is not above 80
    assert alarm.evaluate([10, 81, 85, 90, 95, 99]) == ALARM  # only the last 5 count


def test_m_of_n_need_not_be_consecutive():
    alarm = Alarm(threshold=80, comparison=">", evaluation_periods=5, datapoints_to_alarm=3)
    assert alarm.evaluate([90, 10, 90, 10, 90]) == ALARM
    assert alarm.evaluate([90, 10, 10, 10, 90]) == OK


def test_missing_data_treatments():
    datapoints = [None, None, 90]
    assert Alarm(80, ">", evaluation_periods=3).evaluate([None] * 3) == INSUFFICIENT_DATA
    assert Alarm(80, ">", evaluation_periods=3).evaluate(datapoints) == OK
    assert (
        Alarm(80, ">", evaluation_periods=3, treat_missing_data="breaching").evaluate(datapoints)
        == ALARM
    )
    assert (
        Alarm(80, ">", evaluation_periods=3, treat_missing_data="notBreaching").evaluate(datapoints)
        == OK
    )
    assert (
        Alarm(80, ">", evaluation_periods=3, treat_missing_data="ignore").evaluate(
            [None] * 3, previous_state=ALARM
        )
        == ALARM
    )


def test_alarm_statistics_and_bad_settings():
    assert Alarm(1, statistic="Average").datapoint([1, 2, 3, 6]) == 3
    assert Alarm(1, statistic="Sum").datapoint([1, 2]) == 3
    assert Alarm(1, statistic="SampleCount").datapoint([5, 5, 5]) == 3
    with pytest.raises(ValueError, match="datapoints_to_alarm 6"):
        Alarm(80, evaluation_periods=5, datapoints_to_alarm=6)
    with pytest.raises(ValueError, match="'above'"):
        Alarm(80, comparison="above")


# ------------------------------------------------------------------ target tracking
def test_target_tracking_model():
    assert target_tracking_desired(4, 80, 50) == 7  # 6.4 -> 7
    assert target_tracking_desired(10, 57.5, 50) == 12  # 1.5 to add -> add 2
    assert target_tracking_desired(10, 42.5, 50) == 9  # 1.5 to remove -> remove 1
    assert target_tracking_desired(10, 46, 50) == 10  # within 10% below: no scale-in
    assert target_tracking_desired(20, 44, 50) == 18  # 12% below: scale in
    assert target_tracking_desired(10, 55, 50) == 11  # float noise must not give 12


def test_target_tracking_alarms_3_of_3_high_15_of_15_low():
    policy = TargetTrackingPolicy(50)
    assert decide([policy], observe(4, 80)) is None
    assert decide([policy], observe(4, 80)) is None
    assert decide([policy], observe(4, 80)).desired == 7  # third high datapoint
    policy = TargetTrackingPolicy(50)
    for _ in range(14):
        assert decide([policy], observe(10, 20)) is None
    assert decide([policy], observe(10, 20)).desired == 4  # 15th low datapoint


def test_several_target_tracking_policies():
    cpu, requests = (
        TargetTrackingPolicy(50, 1, 1, name="cpu"),
        TargetTrackingPolicy(100, 1, 1, name="requests"),
    )
    # one wants out, the other in: scale out
    cpu.evaluate(observe(10, 80))
    decision = decide([cpu, requests], observe(10, 80))
    assert decision.desired == 16 and decision.policy == "cpu"
    # both want in, by different amounts: the largest capacity wins
    low_cpu, low_requests = TargetTrackingPolicy(50, 1, 1), TargetTrackingPolicy(50, 1, 1)

    class Fixed(TargetTrackingPolicy):
        def __init__(self, metric, **kw):
            super().__init__(50, 1, 1, **kw)
            self.metric = metric

        def evaluate(self, observation):
            observation = Observation(
                observation.now,
                observation.desired,
                0,
                100,
                observation.in_service,
                observation.ready,
                0,
                self.metric,
            )
            return super().evaluate(observation)

    assert decide([Fixed(20), Fixed(30)], observe(10, 0)).desired == 6
    # one wants in, the other is on target: no scale-in
    assert decide([Fixed(20), Fixed(50)], observe(10, 0)) is None
    del low_cpu, low_requests


def test_target_tracking_blocks_scale_in_while_warming_and_skips_missing_data():
    policy = TargetTrackingPolicy(50, 1, 1)
    assert decide([policy], observe(10, 20, warming=1)) is None
    assert decide([policy], observe(10, 20)).desired == 4
    assert decide([policy], observe(10, None)) is None


# ------------------------------------------------------------------ predictive, scheduled, simple
def test_predictive_forecasts_from_past_days_and_never_scales_in():
    policy = PredictivePolicy(capacity_per_instance=100, target=50, hour=60, day=240)  # 4 h days
    loads = [100, 500, 100, 100]
    decisions = []
    for day in range(2):
        for hour, load in enumerate(loads):
            d = policy.evaluate(observe(2, None, now=(day * 4 + hour) * 60, load=load))
            decisions.append(d)
    assert decisions[:4] == [None] * 4  # no history yet
    assert decisions[5].desired == 10 and not decisions[5].holds  # 500 / 50 per instance
    assert decisions[4].desired == 2 and decisions[4].holds  # forecast 2 = current: a floor
    # never below the forecast, never a scale-in decision of its own
    assert all(d is None or d.desired >= 2 for d in decisions)


def test_cron_and_scheduled_actions():
    cron = Cron.parse("*/15 9-17 * * 1-5")
    from datetime import UTC, datetime

    assert cron.matches(datetime(2026, 1, 6, 9, 45, tzinfo=UTC))
    assert not cron.matches(datetime(2026, 1, 6, 9, 50, tzinfo=UTC))
    assert not cron.matches(datetime(2026, 1, 10, 9, 45, tzinfo=UTC))  # Saturday
    for bad in ("* * *", "61 * * * *", "a * * * *"):
        with pytest.raises(ValueError, match="cron"):
            Cron.parse(bad)
    once = ScheduledAction("launch-day", at=3600, desired=8)
    assert once.fire_times(0, 7200) == [3600]
    # weekday 08:00 over one week (Monday epoch): five times
    daily = ScheduledAction("morning", recurrence="0 8 * * 1-5", min_size=4)
    assert len(daily.fire_times(0, 7 * 86400)) == 5


def test_scheduled_action_ignores_cooldown_and_keeps_desired_inside_limits():
    group = AutoScalingGroup(LaunchTemplate(boot_time=0), 1, 10, 2)
    group.cooldown_until = 1e9
    group.update_size(now=0, min_size=5)
    assert group.desired_capacity == 5
    group.update_size(now=1, max_size=3, min_size=1)
    assert group.desired_capacity == 3
    with pytest.raises(CapacityError, match="desired capacity 9"):
        group.update_size(now=2, desired=9)


def test_manual_scaling_and_cooldown():
    group = AutoScalingGroup(LaunchTemplate(boot_time=0), 1, 5, 1)
    assert group.set_desired_capacity(3, now=0)
    group.cooldown_until = 100
    assert not group.set_desired_capacity(4, now=50, honor_cooldown=True)
    assert group.set_desired_capacity(4, now=50)  # default: ignores cooldown
    assert group.set_desired_capacity(5, now=100, honor_cooldown=True)
    with pytest.raises(CapacityError, match="desired capacity 6"):
        group.set_desired_capacity(6, now=100)


def test_simple_scaling_waits_for_the_activity_and_the_cooldown():
    group = AutoScalingGroup(LaunchTemplate(boot_time=60), 1, 10, 2, instance_warmup=0, now=-60)
    group.step(0)
    policy = SimpleScalingPolicy(Alarm(80, ">"), 1)
    assert policy.cooldown == 300  # the default cooldown
    changes = []
    for now in range(0, 1000, 10):
        group.step(now)
        decision = decide([policy], group.observe(now, 95.0))
        if decision:
            group.apply(decision, now)
            changes.append(now)
    # launched at 0, in service at 60, cooldown until 360; next at 360, in service 420, +300...
    assert changes == [0, 360, 720]


# ------------------------------------------------------------------ group: health, AZs, termination
def test_maintain_instance_level_fleet_of_six_replaces_failed_servers():
    group = AutoScalingGroup(
        LaunchTemplate(boot_time=60),
        6,
        6,
        6,
        availability_zones=("a", "b", "c"),
        health_check_grace_period=300,
        now=-400,
    )
    group.step(0)
    assert group.count(IN_SERVICE) == 6
    group.cooldown_until = 1e9  # replacement never waits for a cooldown
    for instance in [i for i in group.instances if i.state == IN_SERVICE][:2]:
        group.mark_unhealthy(instance.id, now=10)
    group.step(10)
    # 10% of 6 rounds down to 0 -> at least one at a time
    assert group.count(PENDING) == 1
    group.step(70)  # first replacement in service, second one launched
    assert group.count(IN_SERVICE) == 5 and group.count(PENDING) == 1
    group.step(130)
    assert group.count(IN_SERVICE) == 6 and group.count("Unhealthy") == 0


def test_replacement_batch_is_ten_percent_of_desired():
    group = AutoScalingGroup(LaunchTemplate(boot_time=60), 30, 30, 30, now=-400)
    group.step(0)
    for instance in [i for i in group.instances if i.state == IN_SERVICE][:5]:
        group.mark_unhealthy(instance.id, now=0)
    group.step(1)
    assert group.count(PENDING) == 3  # 10% of 30


def test_health_check_grace_period():
    group = AutoScalingGroup(LaunchTemplate(boot_time=10), 1, 1, 1, health_check_grace_period=300)
    group.step(10)
    group.mark_unhealthy(group.instances[0].id, now=20)
    group.step(100)
    assert group.count("Unhealthy") == 1 and group.count(PENDING) == 0  # still in grace
    group.step(300)
    assert group.count(PENDING) == 1


def test_launches_balance_availability_zones():
    group = AutoScalingGroup(LaunchTemplate(), 0, 10, 0, availability_zones=("a", "b", "c"))
    group.set_desired_capacity(7, now=0)
    assert sorted(group.zone_counts().values()) == [2, 2, 3]


def test_default_termination_policy():
    template = LaunchTemplate(boot_time=0)
    group = AutoScalingGroup(template, 0, 10, 0, availability_zones=("a", "b"))
    group.set_desired_capacity(4, now=0)  # a, b, a, b with version 1
    group.launch_template = template.new_version()
    group.set_desired_capacity(5, now=1000)  # a gets a version-2 instance
    # zone a has the most instances; inside it the oldest template version goes first,
    # then the one closest to the next billing hour (launched at 0 vs ...)
    victim = group.choose_for_termination(1, now=3000)[0]
    assert victim.availability_zone == "a" and victim.template_version == 1
    group.set_desired_capacity(4, now=3000)
    assert group.zone_counts() == {"a": 2, "b": 2}


@pytest.mark.parametrize(
    ("policy", "expected_launch"),
    [
        ("OldestInstance", 0),
        ("NewestInstance", 2000),
        ("OldestLaunchTemplate", 0),
    ],
)
def test_named_termination_policies(policy, expected_launch):
    group = AutoScalingGroup(
        LaunchTemplate(boot_time=0), 0, 10, 0, availability_zones=("a",), termination_policy=policy
    )
    for now, size in [(0, 1), (1000, 2), (2000, 3)]:
        group.set_desired_capacity(size, now=now)
    assert group.choose_for_termination(1, now=2500)[0].launch_time == expected_launch


def test_closest_to_next_instance_hour():
    group = AutoScalingGroup(
        LaunchTemplate(boot_time=0),
        0,
        10,
        0,
        availability_zones=("a",),
        termination_policy="ClosestToNextInstanceHour",
    )
    for now, size in [(0, 1), (1000, 2), (2000, 3)]:
        group.set_desired_capacity(size, now=now)
    # at 3500: launched at 0 -> 100 s to its next hour; 1000 -> 1100 s; 2000 -> 2100 s
    assert group.choose_for_termination(1, now=3500)[0].launch_time == 0


def test_group_rejects_bad_sizes():
    with pytest.raises(CapacityError, match="desired capacity 5"):
        AutoScalingGroup(LaunchTemplate(), 1, 4, 5)
    with pytest.raises(ValueError, match="termination policy 'Random'"):
        AutoScalingGroup(LaunchTemplate(), 1, 4, termination_policy="Random")


# ------------------------------------------------------------------ HPA
def test_hpa_reference_examples():
    assert hpa_desired(4, [80] * 4, 50) == 7
    assert hpa_desired(10, [54] * 10, 50) == 10
    assert hpa_desired(10, [56] * 10, 50) == 12
    assert hpa_desired(4, [90, 90, 90, None], 50) == 6
    assert hpa_desired(4, [20, 20, 20, None], 50) == 4
    assert hpa_desired(4, [None] * 4, 50) == 4


def test_hpa_missing_metrics_flip_means_no_change():
    # 3 pods at 60% of a 50% target (ratio 1.2) + 1 missing counted as 0% -> 45%: flips down
    assert hpa_desired(4, [60, 60, 60, None], 50) == 4


def test_hpa_without_behavior_stabilizes_down_and_caps_up():
    hpa = HorizontalPodAutoscaler(1, 100, 50)
    assert hpa.step(0, 1, [500]) == 4  # wants 10, capped at max(2 x 1, 4)
    assert hpa.step(15, 4, [500] * 4) == 8  # wants 40, capped at 2 x 4
    # wants 1, but 40 was recommended within 300 s: that wins (still capped at 2 x 8)
    assert hpa.step(30, 8, [5] * 8) == 16
    assert hpa.step(200, 16, [5] * 16) == 32  # the stale 40 keeps pulling up
    assert hpa.step(360, 32, [5] * 32) == 4  # ceil(0.1 x 32): old recommendations expired


def test_hpa_with_default_behavior():
    hpa = HorizontalPodAutoscaler(1, 100, 50, use_behavior=True)
    # scale-up: max(4 pods, 100%) per 15 s
    assert hpa.step(0, 2, [500, 500]) == 6  # wants 20; 2 + 4 = 6 beats 2 x 2 = 4
    assert hpa.step(15.5, 6, [500] * 6) == 12  # 100% of 6 beats +4
    # scale-down: stabilized over 300 s, then 100% per 15 s
    assert hpa.step(30, 12, [5] * 12) == 12
    assert hpa.step(331, 12, [5] * 12) == 2


def test_hpa_behavior_pods_policy_limits_scale_down():
    rules = HPAScalingRules(0, (HPAScalingPolicy("Pods", 2, 60),))
    hpa = HorizontalPodAutoscaler(1, 100, 50, use_behavior=True, scale_down=rules)
    assert hpa.step(0, 10, [5] * 10) == 8
    assert hpa.step(15, 8, [5] * 8) == 8  # 2 already removed in this 60 s period
    assert hpa.step(61, 8, [5] * 8) == 6


# ------------------------------------------------------------------ elasticity
def test_spec_rg_elasticity_example():
    metrics = elasticity_metrics([2, 2, 4, 4, 3], [2, 2, 2, 4, 5], step=1)
    assert metrics["accuracy_under"] == pytest.approx(0.4)
    assert metrics["accuracy_over"] == pytest.approx(0.4)
    assert metrics["timeshare_under"] == pytest.approx(0.2)
    assert metrics["timeshare_over"] == pytest.approx(0.2)
    assert metrics["jitter"] == 0


def test_public_surface():
    for name in autoscale.__all__:
        assert hasattr(autoscale, name), name
    assert math.isclose(autoscale.percent_change(10, -39), -3)


def test_scheduled_actions_need_unique_names_and_start_times():
    from deploylab.autoscale import check_schedule

    with pytest.raises(ValueError, match="'night' is used twice"):
        check_schedule(
            [ScheduledAction("night", at=0, desired=1), ScheduledAction("night", at=60, desired=1)]
        )
    with pytest.raises(ValueError, match="both start at 28800"):
        check_schedule(
            [
                ScheduledAction("a", recurrence="0 8 * * *", min_size=2),
                ScheduledAction("b", at=8 * 3600, desired=3),
            ]
        )
    assert (
        len(
            check_schedule(
                [
                    ScheduledAction("a", recurrence="0 8 * * *", min_size=2),
                    ScheduledAction("b", recurrence="0 20 * * *", min_size=1),
                ]
            )
        )
        == 2
    )


def test_scale_in_removes_unhealthy_instances_first():
    group = AutoScalingGroup(LaunchTemplate(boot_time=0), 1, 6, 4, health_check_grace_period=300)
    sick = group.instances[1].id
    group.mark_unhealthy(sick, now=10)  # inside the grace period: not replaced yet
    group.set_desired_capacity(3, now=20)
    assert group.find(sick) is None
    assert group.count(IN_SERVICE) == 3
