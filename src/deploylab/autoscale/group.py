"""An EC2 Auto Scaling group: launch template, size limits, instances and their life cycle.

Pure and deterministic: every method takes ``now`` (seconds); a seeded random generator breaks
the termination policy's last tie. :meth:`AutoScalingGroup.step` moves instances through
``Pending → InService``, terminates unhealthy ones (at most 10% of desired at a time, after
the health-check grace period) and launches or terminates to match the desired capacity,
balancing availability zones.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deploylab.autoscale.policies import Decision, Observation

PENDING = "Pending"
IN_SERVICE = "InService"
UNHEALTHY = "Unhealthy"
TERMINATING = "Terminating"
TERMINATED = "Terminated"
INSTANCE_STATES = (PENDING, IN_SERVICE, UNHEALTHY, TERMINATING, TERMINATED)

#: The termination policies EC2 Auto Scaling offers (``Default`` first).
TERMINATION_POLICIES = (
    "Default",
    "OldestInstance",
    "NewestInstance",
    "OldestLaunchTemplate",
    "ClosestToNextInstanceHour",
)


@dataclass(frozen=True)
class LaunchTemplate:
    """What to launch: image, instance type, key pair, security groups; plus what the
    simulator needs (requests/s one instance serves, seconds from launch to InService).

    Launch templates are versioned: :meth:`new_version` returns the next version."""

    name: str = "web"
    version: int = 1
    image_id: str = "ami-0example"
    instance_type: str = "t3.micro"
    key_name: str | None = None
    security_groups: tuple[str, ...] = ("sg-web",)
    capacity: float = 100.0  # requests/s at 100% CPU
    boot_time: float = 120.0  # seconds from launch to InService
    hourly_price: float = 0.0104  # USD, t3.micro on-demand (us-east-1)

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"launch template capacity {self.capacity} must be positive")
        if self.boot_time < 0:
            raise ValueError(f"launch template boot_time {self.boot_time} must be >= 0")

    def new_version(self, **changes: Any) -> LaunchTemplate:
        fields = {**self.__dict__, **changes, "version": self.version + 1}
        return LaunchTemplate(**fields)


@dataclass(slots=True, eq=False)
class Instance:
    """One instance of the group (compared by identity: two instances are never equal)."""

    id: str
    availability_zone: str
    launch_time: float
    template_version: int
    state: str = PENDING
    in_service_time: float | None = None
    terminate_time: float | None = None
    replacement: bool = False
    protected: bool = False


def _warm_after(instance: Instance, warmup: float) -> float:
    """When an in-service instance leaves its warm-up (minus infinity for one no longer in
    service: it never counts as warming)."""
    since = instance.in_service_time
    if instance.state != IN_SERVICE or since is None:
        return -math.inf
    return since + warmup


def _terminated_at(instance: Instance) -> float:
    """When a terminating instance's drain is over (it is set when termination starts)."""
    return math.inf if instance.terminate_time is None else instance.terminate_time


@dataclass(frozen=True, slots=True)
class Activity:
    """A scaling activity, as in the group's activity history."""

    time: float
    kind: str  # "launch", "terminate", "desired", "unhealthy", "size"
    description: str
    cause: str = ""


class CapacityError(ValueError):
    """A capacity outside the group's min/max, or min above max."""


class AutoScalingGroup:
    """An Auto Scaling group.

    >>> group = AutoScalingGroup(LaunchTemplate(boot_time=60), min_size=1, max_size=4,
    ...                          desired_capacity=2, availability_zones=("a", "b"))
    >>> sorted(i.availability_zone for i in group.instances)
    ['a', 'b']
    >>> group.step(now=60); group.count(IN_SERVICE)
    2
    >>> group.set_desired_capacity(3, now=60)
    True
    >>> group.count(PENDING), group.count(IN_SERVICE)
    (1, 2)
    """

    def __init__(
        self,
        launch_template: LaunchTemplate,
        min_size: int,
        max_size: int,
        desired_capacity: int | None = None,
        availability_zones: Sequence[str] = ("us-east-1a", "us-east-1b", "us-east-1c"),
        health_check_grace_period: float = 300.0,
        default_cooldown: float = 300.0,
        instance_warmup: float = 300.0,
        termination_policy: str = "Default",
        drain_time: float = 0.0,
        now: float = 0.0,
        seed: int = 0,
        name: str = "asg",
    ) -> None:
        if min_size < 0 or max_size < min_size:
            raise CapacityError(f"min_size {min_size} / max_size {max_size}: need 0 <= min <= max")
        desired = min_size if desired_capacity is None else desired_capacity
        if not min_size <= desired <= max_size:
            raise CapacityError(
                f"desired capacity {desired} is outside min {min_size} / max {max_size}"
            )
        if not availability_zones:
            raise ValueError("an Auto Scaling group needs at least one availability zone")
        if termination_policy not in TERMINATION_POLICIES:
            raise ValueError(
                f"termination policy {termination_policy!r} is not one of "
                f"{list(TERMINATION_POLICIES)}"
            )
        self.name = name
        self.launch_template = launch_template
        self.min_size = min_size
        self.max_size = max_size
        self.desired_capacity = desired
        self.availability_zones = tuple(availability_zones)
        self.health_check_grace_period = health_check_grace_period
        self.default_cooldown = default_cooldown
        self.instance_warmup = instance_warmup
        self.termination_policy = termination_policy
        self.drain_time = drain_time
        self.instances: list[Instance] = []
        self.activities: list[Activity] = []
        self.cooldown_until = -math.inf
        self._cooldown_after_activity: float | None = None
        self._random = random.Random(seed)
        self._next_id = 0
        self._pending: list[Instance] = []
        self._unhealthy: list[Instance] = []
        self._terminating: list[Instance] = []
        self._warming: list[Instance] = []  # in service, maybe still inside the warm-up
        self._in_service = 0
        self._reconcile(now, cause="group created")

    # ---------------------------------------------------------------- counts and views
    def count(self, state: str) -> int:
        """How many instances are in ``state`` now."""
        if state == IN_SERVICE:
            return self._in_service
        return sum(1 for instance in self.instances if instance.state == state)

    @property
    def active(self) -> list[Instance]:
        """Instances that count toward desired capacity (not terminating)."""
        return [i for i in self.instances if i.state in (PENDING, IN_SERVICE, UNHEALTHY)]

    def warming(self, now: float) -> int:
        """Instances launching or in service but still inside the warm-up."""
        return len(self._pending) + self._warming_in_service(now)

    def _warming_in_service(self, now: float) -> int:
        warmup = self.instance_warmup
        return sum(1 for i in self._warming if _warm_after(i, warmup) > now)

    def in_cooldown(self, now: float) -> bool:
        """True while a simple-scaling activity runs or its cooldown has not passed."""
        return self._cooldown_after_activity is not None or now < self.cooldown_until

    def observe(self, now: float, metric: float | None, load: float = 0.0) -> Observation:
        """What the policies see: sizes, counts, the metric of warmed-up instances."""
        warming_in_service = self._warming_in_service(now) if self._warming else 0
        in_service = self._in_service
        return Observation(
            now,
            self.desired_capacity,
            self.min_size,
            self.max_size,
            in_service,
            in_service - warming_in_service,
            warming_in_service + len(self._pending),
            metric,
            load,
            self.in_cooldown(now),
        )

    # ---------------------------------------------------------------- size changes
    def set_desired_capacity(
        self, value: int, now: float, honor_cooldown: bool = False, cause: str = "manual"
    ) -> bool:
        """Manual scaling. Raises :class:`CapacityError` outside min/max; returns False (and
        does nothing) if ``honor_cooldown`` and the group is in a cooldown."""
        if not self.min_size <= value <= self.max_size:
            raise CapacityError(
                f"desired capacity {value} is outside min {self.min_size} / max {self.max_size}"
            )
        if honor_cooldown and self.in_cooldown(now):
            return False
        self._set_desired(value, now, cause)
        return True

    def update_size(
        self,
        now: float,
        desired: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        cause: str = "scheduled action",
    ) -> None:
        """What a scheduled action does: change any of min/max/desired; desired is then kept
        inside the new limits."""
        new_min = self.min_size if min_size is None else min_size
        new_max = self.max_size if max_size is None else max_size
        if new_min < 0 or new_max < new_min:
            raise CapacityError(f"min_size {new_min} / max_size {new_max}: need 0 <= min <= max")
        if desired is not None and not new_min <= desired <= new_max:
            raise CapacityError(
                f"desired capacity {desired} is outside min {new_min} / max {new_max}"
            )
        if (new_min, new_max) != (self.min_size, self.max_size):
            self.activities.append(Activity(now, "size", f"min {new_min}, max {new_max}", cause))
        self.min_size, self.max_size = new_min, new_max
        target = self.desired_capacity if desired is None else desired
        self._set_desired(min(max(target, new_min), new_max), now, cause)

    def apply(self, decision: Decision, now: float) -> int:
        """Apply a policy decision (clamped to min/max); returns the new desired capacity."""
        value = min(max(decision.desired, self.min_size), self.max_size)
        if value != self.desired_capacity:
            self._set_desired(value, now, f"{decision.policy}: {decision.reason}")
            if decision.cooldown is not None:
                self._cooldown_after_activity = decision.cooldown
        return value

    def _set_desired(self, value: int, now: float, cause: str) -> None:
        if value != self.desired_capacity:
            self.activities.append(
                Activity(now, "desired", f"desired {self.desired_capacity} -> {value}", cause)
            )
            self.desired_capacity = value
        self._reconcile(now, cause)

    # ---------------------------------------------------------------- health
    def mark_unhealthy(self, instance_id: str, now: float) -> None:
        """A failed health check (EC2 status or load balancer) for one instance."""
        for instance in self.instances:
            if instance.id == instance_id and instance.state in (PENDING, IN_SERVICE):
                if instance.state == IN_SERVICE:
                    self._in_service -= 1
                else:
                    self._pending.remove(instance)
                instance.state = UNHEALTHY
                self._unhealthy.append(instance)
                self.activities.append(Activity(now, "unhealthy", instance.id, "health check"))
                return
        raise ValueError(f"no pending or in-service instance {instance_id!r} in {self.name}")

    def mark_in_service(self, instance_id: str, now: float) -> None:
        """A pending instance passed its first health check (the live controller's boot is
        real, so it says when; the simulator uses the template's ``boot_time`` instead)."""
        for instance in self._pending:
            if instance.id == instance_id:
                self._pending.remove(instance)
                instance.state = IN_SERVICE
                instance.in_service_time = now
                self._in_service += 1
                self._warming.append(instance)
                self.activities.append(Activity(now, "in-service", instance.id))
                return
        raise ValueError(f"no pending instance {instance_id!r} in {self.name}")

    def find(self, instance_id: str) -> Instance | None:
        """The instance with that id (None once it has terminated)."""
        for instance in self.instances:
            if instance.id == instance_id:
                return instance
        return None

    def replacement_batch(self) -> int:
        """Unhealthy instances replaced at a time: 10% of desired, at least one."""
        return max(1, self.desired_capacity // 10)

    # ---------------------------------------------------------------- time passes
    def step(self, now: float) -> None:
        """Advance the life cycle to ``now`` (call it at least once per decision period)."""
        if self._pending:
            ready_at = self.launch_template.boot_time
            still = []
            for instance in self._pending:
                if now - instance.launch_time >= ready_at:
                    instance.state = IN_SERVICE
                    instance.in_service_time = now
                    self._in_service += 1
                    self._warming.append(instance)
                    self.activities.append(Activity(now, "in-service", instance.id))
                else:
                    still.append(instance)
            self._pending = still
        if self._warming and _warm_after(self._warming[0], self.instance_warmup) <= now:
            warmup = self.instance_warmup
            self._warming = [i for i in self._warming if _warm_after(i, warmup) > now]
        if self._cooldown_after_activity is not None and not self._pending:
            self.cooldown_until = now + self._cooldown_after_activity
            self._cooldown_after_activity = None
        if self._terminating:
            self.step_terminations(now)
        if self._unhealthy:
            self._replace_unhealthy(now)

    def _replace_unhealthy(self, now: float) -> None:
        in_progress = sum(1 for i in self._pending if i.replacement)
        budget = self.replacement_batch() - in_progress
        grace = self.health_check_grace_period
        for instance in list(self._unhealthy):
            if budget <= 0:
                break
            if now - instance.launch_time < grace:
                continue  # still inside the grace period: not acted on yet
            self._unhealthy.remove(instance)
            self._begin_termination(instance, now, "unhealthy: replacing", drain=0.0)
            self._launch(now, "replacing unhealthy instance", replacement=True)
            budget -= 1

    # ---------------------------------------------------------------- launch / terminate
    def _reconcile(self, now: float, cause: str) -> None:
        active = len(self._pending) + self._in_service + len(self._unhealthy)
        while active < self.desired_capacity:
            self._launch(now, cause)
            active += 1
        # on scale-in, unhealthy instances go first: they were to be replaced anyway
        while active > self.desired_capacity and self._unhealthy:
            self._begin_termination(self._unhealthy[0], now, cause, drain=0.0)
            active -= 1
        if active > self.desired_capacity:
            for instance in self.choose_for_termination(active - self.desired_capacity, now):
                self._begin_termination(instance, now, cause, drain=self.drain_time)

    def _launch(self, now: float, cause: str, replacement: bool = False) -> Instance:
        counts = self.zone_counts()
        zone = min(self.availability_zones, key=lambda z: counts[z])  # ties: first listed
        self._next_id += 1
        instance = Instance(
            f"i-{self._next_id:04d}",
            zone,
            now,
            self.launch_template.version,
            replacement=replacement,
        )
        self.instances.append(instance)
        if self.launch_template.boot_time == 0:
            instance.state = IN_SERVICE
            instance.in_service_time = now
            self._in_service += 1
            self._warming.append(instance)
        else:
            self._pending.append(instance)
        self.activities.append(Activity(now, "launch", f"{instance.id} in {zone}", cause))
        return instance

    def _begin_termination(self, instance: Instance, now: float, cause: str, drain: float) -> None:
        if instance.state == IN_SERVICE:
            self._in_service -= 1
        elif instance.state == PENDING:
            self._pending.remove(instance)
        elif instance.state == UNHEALTHY and instance in self._unhealthy:
            self._unhealthy.remove(instance)
        instance.state = TERMINATING
        instance.terminate_time = now + drain
        self._terminating.append(instance)
        self.activities.append(Activity(now, "terminate", instance.id, cause))
        if drain <= 0:
            self.step_terminations(now)

    def step_terminations(self, now: float) -> None:
        """Finish terminations whose drain time is over (they leave ``instances``)."""
        gone = [i for i in self._terminating if now >= _terminated_at(i)]
        if gone:
            for instance in gone:
                instance.state = TERMINATED
            self._terminating = [i for i in self._terminating if now < _terminated_at(i)]
            self.instances = [i for i in self.instances if i.state != TERMINATED]

    def zone_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.availability_zones, 0)
        for instance in self.instances:
            if instance.state in (PENDING, IN_SERVICE, UNHEALTHY):
                counts[instance.availability_zone] = counts.get(instance.availability_zone, 0) + 1
        return counts

    def choose_for_termination(self, count: int, now: float) -> list[Instance]:
        """Pick ``count`` instances to terminate on scale-in with the group's policy.

        Every policy first picks the zone with the most instances (that has an unprotected
        one). Inside it, ``Default``: oldest launch template version first, then closest to the
        next billing hour, then random; the named alternatives use their own order.
        """
        chosen: list[Instance] = []
        candidates = [i for i in self.instances if i.state in (PENDING, IN_SERVICE)]
        for _ in range(count):
            unprotected = [i for i in candidates if not i.protected and i not in chosen]
            if not unprotected:
                break
            counts = dict.fromkeys(self.availability_zones, 0)
            for instance in candidates:
                if instance not in chosen:
                    counts[instance.availability_zone] += 1
            zones_with_choice = {i.availability_zone for i in unprotected}
            zone = max(sorted(zones_with_choice), key=lambda z: counts[z])
            in_zone = [i for i in unprotected if i.availability_zone == zone]
            chosen.append(self._pick(in_zone, now))
        return chosen

    def _pick(self, instances: list[Instance], now: float) -> Instance:
        policy = self.termination_policy

        def to_next_hour(instance: Instance) -> float:
            return 3600 - ((now - instance.launch_time) % 3600)

        if policy == "OldestInstance":
            return min(instances, key=lambda i: (i.launch_time, i.id))
        if policy == "NewestInstance":
            return max(instances, key=lambda i: (i.launch_time, i.id))
        if policy == "OldestLaunchTemplate":
            return min(instances, key=lambda i: (i.template_version, i.launch_time, i.id))
        if policy == "ClosestToNextInstanceHour":
            return min(instances, key=lambda i: (to_next_hour(i), i.id))
        oldest = min(i.template_version for i in instances)
        instances = [i for i in instances if i.template_version == oldest]
        closest = min(to_next_hour(i) for i in instances)
        instances = [i for i in instances if to_next_hour(i) == closest]
        return self._random.choice(sorted(instances, key=lambda i: i.id))
