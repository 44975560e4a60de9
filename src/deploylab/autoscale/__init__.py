"""Autoscaling: EC2 Auto Scaling groups and policies, CloudWatch alarms, the Kubernetes HPA,
a trace-driven simulator with elasticity metrics, and a live autoscaler of real processes.

The core (groups, alarms, policies, HPA) is pure: time is passed in. The simulator and the live
controller (``deploylab.autoscale.live``) run the same policy objects.

>>> from deploylab import autoscale
>>> autoscale.step_adjustment(10, "PercentChangeInCapacity", 10)
11
>>> autoscale.target_tracking_desired(4, 80, 50)
7
>>> autoscale.hpa_desired(10, [56] * 10, 50)
12
"""

from deploylab.autoscale.alarm import ALARM, INSUFFICIENT_DATA, OK, Alarm, AlarmMonitor
from deploylab.autoscale.elasticity import elasticity_metrics
from deploylab.autoscale.group import (
    IN_SERVICE,
    PENDING,
    TERMINATING,
    TERMINATION_POLICIES,
    UNHEALTHY,
    Activity,
    AutoScalingGroup,
    CapacityError,
    Instance,
    LaunchTemplate,
)
from deploylab.autoscale.hpa import (
    HorizontalPodAutoscaler,
    HPAPolicy,
    HPAScalingPolicy,
    HPAScalingRules,
    hpa_desired,
)
from deploylab.autoscale.policies import (
    ADJUSTMENT_TYPES,
    CHANGE_IN_CAPACITY,
    EXACT_CAPACITY,
    PERCENT_CHANGE_IN_CAPACITY,
    Decision,
    Observation,
    PredictivePolicy,
    SimpleScalingPolicy,
    Step,
    StepScalingPolicy,
    TargetTrackingPolicy,
    decide,
    percent_change,
    step_adjustment,
    target_tracking_desired,
)
from deploylab.autoscale.schedule import Cron, ScheduledAction, check_schedule
from deploylab.autoscale.simulate import (
    POLICY_KINDS,
    SimulationConfig,
    SimulationResult,
    compare_policies,
    simulate,
)
from deploylab.autoscale.traces import TRACE_KINDS, generate_trace

__all__ = [
    "ADJUSTMENT_TYPES",
    "ALARM",
    "CHANGE_IN_CAPACITY",
    "EXACT_CAPACITY",
    "INSUFFICIENT_DATA",
    "IN_SERVICE",
    "OK",
    "PENDING",
    "PERCENT_CHANGE_IN_CAPACITY",
    "POLICY_KINDS",
    "TERMINATING",
    "TERMINATION_POLICIES",
    "TRACE_KINDS",
    "UNHEALTHY",
    "Activity",
    "Alarm",
    "AlarmMonitor",
    "AutoScalingGroup",
    "CapacityError",
    "Cron",
    "Decision",
    "HPAPolicy",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "HorizontalPodAutoscaler",
    "Instance",
    "LaunchTemplate",
    "Observation",
    "PredictivePolicy",
    "ScheduledAction",
    "SimpleScalingPolicy",
    "SimulationConfig",
    "SimulationResult",
    "Step",
    "StepScalingPolicy",
    "TargetTrackingPolicy",
    "check_schedule",
    "compare_policies",
    "decide",
    "elasticity_metrics",
    "generate_trace",
    "hpa_desired",
    "percent_change",
    "simulate",
    "step_adjustment",
    "target_tracking_desired",
]
