"""Zero-downtime deployment with nginx: strategies as plans, and the real thing on loopback.

``strategies`` is the pure core (restart in place, blue-green, rolling; who is serving after
each step); :mod:`deploylab.nginx` runs a real nginx from its own directory (start, reload, stop).
``traffic`` records a bounded stream of real requests; ``experiment`` executes a plan against
backend processes behind nginx while traffic flows, so a learner sees which requests failed.
"""

from deploylab.deploy.experiment import (
    STRATEGIES,
    BackendFleet,
    DeploymentRun,
    make_plan,
    run_deployment,
)
from deploylab.deploy.strategies import (
    Step,
    blue_green_plan,
    minimum_serving,
    restart_plan,
    rolling_plan,
    serving_after_each_step,
)
from deploylab.deploy.traffic import RequestRecord, TrafficRecorder, summarize

__all__ = [
    "STRATEGIES",
    "BackendFleet",
    "DeploymentRun",
    "RequestRecord",
    "Step",
    "TrafficRecorder",
    "blue_green_plan",
    "make_plan",
    "minimum_serving",
    "restart_plan",
    "rolling_plan",
    "run_deployment",
    "serving_after_each_step",
    "summarize",
]
