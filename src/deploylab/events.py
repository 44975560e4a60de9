"""Structured events that runtime servers publish and views subscribe to.

A server owns an :class:`EventBus`; it calls ``publish(kind, **fields)`` at each step (request
received, backend picked, cache hit, instance launched). Subscribers are plain callables, so a
widget, a test or a logger can listen without the server knowing about them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``kind`` (``"request"``, ``"cache_hit"``…), when, who, details."""

    kind: str
    source: str
    time: float
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: ``{"kind", "source", "time", **fields}``."""
        return {"kind": self.kind, "source": self.source, "time": self.time, **self.fields}


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, keeping the most recent ones for late joiners.

    >>> bus = EventBus("proxy")
    >>> seen = []
    >>> unsubscribe = bus.subscribe(seen.append)
    >>> bus.publish("request", method="GET", target="/").kind
    'request'
    >>> [event.fields["target"] for event in seen]
    ['/']
    >>> unsubscribe()
    >>> _ = bus.publish("request", method="GET", target="/again")
    >>> len(seen), len(bus.recent)
    (1, 2)
    """

    def __init__(self, source: str, keep: int = 1000, clock: Callable[[], float] = time.time):
        self.source = source
        self.recent: deque[Event] = deque(maxlen=keep)
        self._subscribers: list[Subscriber] = []
        self._clock = clock

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every later event; returns a function that stops it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, kind: str, **fields: Any) -> Event:
        """Record an event and hand it to every subscriber. A failing subscriber is dropped
        rather than allowed to break the server that published."""
        event = Event(kind, self.source, self._clock(), fields)
        self.recent.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self._subscribers.remove(subscriber)
        return event
