"""Deployment strategies as plans: plain lists of steps, and how many instances serve after each.

A plan is data, so the same plan is drawn by the lesson's widget, checked by tests, and
executed for real by :mod:`deploylab.deploy.experiment` against nginx and backend processes.

Three strategies, from the bluntest to the gentlest:

* **restart in place** — stop the old version, start the new one on the same ports. Simple,
  and every request in between fails: the downtime zero-downtime deployment avoids.
* **blue-green** — start the whole new ("green") fleet beside the old ("blue") one, switch the
  proxy's upstream in one reload, then stop blue. Needs twice the instances for a moment.
* **rolling** — replace a batch at a time: take it out of the upstream, stop it, start its
  replacement, put that in. Never more than ``batch_size`` instances are missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Step",
    "blue_green_plan",
    "minimum_serving",
    "restart_plan",
    "rolling_plan",
    "serving_after_each_step",
]

ACTIONS = ("start", "stop", "route")


@dataclass(frozen=True)
class Step:
    """One action of a deployment.

    ``action`` is ``"start"`` (launch ``instances``), ``"stop"`` (stop them) or ``"route"``
    (make ``instances`` the proxy's whole upstream list: an nginx reload). A ``start`` with
    ``replaces`` puts each new instance on the port of the old one at the same position, so
    the upstream list does not change (that is what a restart in place does).
    """

    action: str
    instances: tuple[str, ...]
    replaces: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"step action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.replaces and len(self.replaces) != len(self.instances):
            raise ValueError(
                f"a start that replaces {list(self.replaces)} needs as many new instances, "
                f"got {list(self.instances)}"
            )


def _check_fleets(old: Sequence[str], new: Sequence[str]) -> None:
    if not old or not new:
        raise ValueError(f"a deployment needs old and new instances, got old={old} new={new}")
    if set(old) & set(new):
        raise ValueError(
            f"instance names must differ between versions: {sorted(set(old) & set(new))}"
        )


def restart_plan(old: Sequence[str], new: Sequence[str]) -> list[Step]:
    """Stop every old instance, then start the new ones on the same ports.

    >>> [(step.action, step.instances) for step in restart_plan(["v1-a"], ["v2-a"])]
    [('stop', ('v1-a',)), ('start', ('v2-a',))]
    """
    _check_fleets(old, new)
    if len(old) != len(new):
        raise ValueError(f"a restart in place needs as many new instances as old: {old} → {new}")
    return [
        Step("stop", tuple(old), note="stop the old version"),
        Step(
            "start", tuple(new), replaces=tuple(old), note="start the new version on the same ports"
        ),
    ]


def blue_green_plan(blue: Sequence[str], green: Sequence[str]) -> list[Step]:
    """Start green beside blue, switch the upstream to green in one reload, stop blue.

    >>> for step in blue_green_plan(["blue-1", "blue-2"], ["green-1", "green-2"]):
    ...     print(step.action, *step.instances)
    start green-1 green-2
    route green-1 green-2
    stop blue-1 blue-2
    """
    _check_fleets(blue, green)
    return [
        Step("start", tuple(green), note="start green beside blue (not yet routed)"),
        Step("route", tuple(green), note="reload the proxy: upstream = green"),
        Step("stop", tuple(blue), note="stop blue once its requests are finished"),
    ]


def rolling_plan(old: Sequence[str], new: Sequence[str], batch_size: int = 1) -> list[Step]:
    """Replace ``batch_size`` instances at a time, never routing to a stopped one.

    >>> for step in rolling_plan(["v1-a", "v1-b"], ["v2-a", "v2-b"]):
    ...     print(step.action, *step.instances)
    route v1-b
    stop v1-a
    start v2-a
    route v2-a v1-b
    route v2-a
    stop v1-b
    start v2-b
    route v2-a v2-b
    """
    _check_fleets(old, new)
    if len(old) != len(new):
        raise ValueError(f"a rolling update replaces one for one: {len(old)} old, {len(new)} new")
    if not 1 <= batch_size <= len(old):
        raise ValueError(f"batch_size {batch_size} must be between 1 and {len(old)}")
    routed = list(old)
    steps: list[Step] = []
    for first in range(0, len(old), batch_size):
        leaving = old[first : first + batch_size]
        arriving = new[first : first + batch_size]
        routed = [name for name in routed if name not in leaving]
        steps.append(Step("route", tuple(routed), note=f"drain {', '.join(leaving)}"))
        steps.append(Step("stop", tuple(leaving)))
        steps.append(Step("start", tuple(arriving)))
        routed = [*new[: first + len(arriving)], *old[first + len(arriving) :]]
        steps.append(Step("route", tuple(routed), note=f"add {', '.join(arriving)}"))
    return steps


def serving_after_each_step(initial: Sequence[str], plan: Sequence[Step]) -> list[tuple[str, ...]]:
    """Which instances are both running and routed after each step of ``plan``.

    ``initial`` instances are running and routed before the first step.

    >>> serving_after_each_step(["v1"], restart_plan(["v1"], ["v2"]))
    [(), ('v2',)]
    """
    running = set(initial)
    routed = list(initial)
    serving: list[tuple[str, ...]] = []
    for step in plan:
        if step.action == "start":
            running.update(step.instances)
            replacement = dict(zip(step.replaces, step.instances, strict=False))
            routed = [replacement.get(name, name) for name in routed]
        elif step.action == "stop":
            running.difference_update(step.instances)
        else:
            routed = list(step.instances)
        serving.append(tuple(name for name in routed if name in running))
    return serving


def minimum_serving(initial: Sequence[str], plan: Sequence[Step]) -> int:
    """The fewest instances serving at any point of the plan: 0 means downtime.

    >>> old, new = ["v1-a", "v1-b", "v1-c"], ["v2-a", "v2-b", "v2-c"]
    >>> minimum_serving(old, restart_plan(old, new))
    0
    >>> minimum_serving(old, blue_green_plan(old, new))
    3
    >>> minimum_serving(old, rolling_plan(old, new, batch_size=1))
    2
    """
    return min(len(serving) for serving in serving_after_each_step(initial, plan))
