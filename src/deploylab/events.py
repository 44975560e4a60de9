"""Structured events that runtime servers publish and views subscribe to.

A server owns an :class:`EventBus`; at each step (request received, backend picked, cache
hit, instance launched) it publishes one event. Subscribers are plain callables, so a widget,
a test or a logger can listen without the server knowing about them.

Each kind of event is its own frozen dataclass with the fields it carries (h11's
``_events.py`` style), so a view matches on ``isinstance(event, RequestReceived)`` and reads
``event.target`` instead of comparing a kind string and indexing a dict. Every event keeps
``kind`` (its wire name), ``source`` (the publisher), ``time`` and the ``fields`` mapping, which
is what :meth:`Event.as_dict` serialises.

Publishers either hand over a typed event (:meth:`EventBus.emit`) or use the older
``publish(kind, **fields)``, which builds the typed class registered for that kind whose
fields match (:func:`make_event`); a kind or a shape nobody registered stays a plain
:class:`Event`. Two publishers use ``"request"`` and ``"error"`` with different fields (the
HTTP server and the asyncio balancer); each has its own class.

>>> bus = EventBus("proxy", clock=lambda: 1.0)
>>> event = bus.publish("cache_hit", id=3, uri="http://a/", age=5)
>>> type(event).__name__, event.uri, event.age, event.kind
('CacheHit', 'http://a/', 5, 'cache_hit')
>>> event.fields
{'id': 3, 'uri': 'http://a/', 'age': 5, 'revalidated': False}
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "EVENT_TYPES",
    "BackendAdded",
    "BackendDown",
    "BackendDrained",
    "BackendDraining",
    "BackendRemoved",
    "BackendUp",
    "BackendsReported",
    "BalancedRequest",
    "BalancerError",
    "BalancerStarted",
    "BalancerStopped",
    "CacheHit",
    "CacheMiss",
    "CacheSkipped",
    "CacheStored",
    "Event",
    "EventBus",
    "Forwarded",
    "Listening",
    "NotModified",
    "Refused",
    "RequestReceived",
    "RequestRejected",
    "ResponseSent",
    "ServerStopped",
    "UpstreamError",
    "UpstreamResponse",
    "make_event",
]

#: The envelope every event has; the other dataclass fields are the kind's own.
_ENVELOPE = ("kind", "source", "time", "extra")

Headers = list[tuple[str, str]]


@dataclass(frozen=True, kw_only=True)
class Event:
    """One thing that happened: ``kind`` (``"request"``, ``"cache_hit"``…), when, who, details.

    The base class is also the event of a kind no class is registered for: its details are
    all in ``extra``. A typed event keeps in ``extra`` only what its class does not declare.
    """

    kind: str
    source: str
    time: float
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    #: Fields published under another name, because the envelope uses it (``{wire: field}``).
    renamed: ClassVar[dict[str, str]] = {}

    @property
    def fields(self) -> dict[str, Any]:
        """The details as published: ``{name: value}`` (declared fields, then extras)."""
        wire = {value: key for key, value in self.renamed.items()}
        data = {
            wire.get(item.name, item.name): getattr(self, item.name)
            for item in dataclasses.fields(self)
            if item.name not in _ENVELOPE
        }
        data.update(self.extra)
        return data

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view: ``{"kind", "source", "time", **fields}``."""
        return {"kind": self.kind, "source": self.source, "time": self.time, **self.fields}


def _kind(name: str) -> Any:
    """A typed event's wire name: fixed by its class, not passed, not repeated in its repr."""
    return field(default=name, init=False, repr=False)


# -- the HTTP server (deploylab.http.server) ------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Listening(Event):
    """A server bound its address and accepts connections."""

    kind: str = _kind("listening")
    address: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ServerStopped(Event):
    """A server closed its listening socket."""

    kind: str = _kind("stopped")
    name: str


@dataclass(frozen=True, kw_only=True)
class RequestReceived(Event):
    """A complete request head arrived (``client`` and ``server`` are ``host:port``)."""

    kind: str = _kind("request")
    id: int
    client: str
    server: str
    method: str
    target: str
    host: str | None
    headers: Headers


@dataclass(frozen=True, kw_only=True)
class ResponseSent(Event):
    """The answer to request ``id`` was written."""

    kind: str = _kind("response")
    id: int
    client: str
    status: int
    bytes: int
    duration_ms: float
    headers: Headers


@dataclass(frozen=True, kw_only=True)
class RequestRejected(Event):
    """A malformed request was answered with ``status`` and the connection closed."""

    kind: str = _kind("error")
    client: str
    status: int
    detail: str


# -- the proxies (deploylab.proxy) -----------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Forwarded(Event):
    """A proxy sends request ``id`` on to ``upstream``, from its ``local_address``."""

    kind: str = _kind("forward")
    renamed: ClassVar[dict[str, str]] = {"source": "local_address"}
    id: int
    upstream: str
    local_address: str
    target: str
    headers: Headers


@dataclass(frozen=True, kw_only=True)
class UpstreamResponse(Event):
    """The upstream answered request ``id``."""

    kind: str = _kind("upstream_response")
    id: int
    upstream: str
    status: int


@dataclass(frozen=True, kw_only=True)
class UpstreamError(Event):
    """The upstream could not be reached or did not answer in time."""

    kind: str = _kind("upstream_error")
    id: int
    upstream: str
    status: int
    detail: str


@dataclass(frozen=True, kw_only=True)
class Refused(Event):
    """The forward proxy refused a client or a destination."""

    kind: str = _kind("refused")
    id: int
    client: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class CacheHit(Event):
    """Served from the cache, ``age`` seconds old (``revalidated``: after a 304)."""

    kind: str = _kind("cache_hit")
    id: int
    uri: str
    age: int
    revalidated: bool = False


@dataclass(frozen=True, kw_only=True)
class CacheMiss(Event):
    """Not in the cache (or stale): the origin is asked."""

    kind: str = _kind("cache_miss")
    id: int
    uri: str


@dataclass(frozen=True, kw_only=True)
class CacheStored(Event):
    """The origin's answer was stored."""

    kind: str = _kind("cache_store")
    id: int
    uri: str


@dataclass(frozen=True, kw_only=True)
class CacheSkipped(Event):
    """The origin's answer may not be stored."""

    kind: str = _kind("cache_skip")
    id: int
    uri: str


@dataclass(frozen=True, kw_only=True)
class NotModified(Event):
    """The origin answered a conditional request with 304."""

    kind: str = _kind("not_modified")
    id: int
    target: str


# -- the asyncio balancer (deploylab.balancer) ----------------------------------------------
@dataclass(frozen=True, kw_only=True)
class BalancerStarted(Event):
    kind: str = _kind("started")
    url: str
    layer: int
    algorithm: str
    backends: list[Any]


@dataclass(frozen=True, kw_only=True)
class BalancerStopped(Event):
    kind: str = _kind("stopped")
    url: str


@dataclass(frozen=True, kw_only=True)
class BalancedRequest(Event):
    """The balancer relayed one request to ``backend`` and got ``status`` back."""

    kind: str = _kind("request")
    backend: str
    status: int
    method: str
    target: str
    client: str
    latency: float


@dataclass(frozen=True, kw_only=True)
class BalancerError(Event):
    """The balancer answered ``status`` itself (no backend could)."""

    kind: str = _kind("error")
    status: int
    reason: str
    target: str


@dataclass(frozen=True, kw_only=True)
class BackendAdded(Event):
    kind: str = _kind("backend_added")
    backend: str
    weight: int
    backup: bool


@dataclass(frozen=True, kw_only=True)
class BackendDraining(Event):
    kind: str = _kind("backend_draining")
    backend: str
    active: int


@dataclass(frozen=True, kw_only=True)
class BackendDrained(Event):
    kind: str = _kind("backend_drained")
    backend: str


@dataclass(frozen=True, kw_only=True)
class BackendRemoved(Event):
    kind: str = _kind("backend_removed")
    backend: str


@dataclass(frozen=True, kw_only=True)
class BackendDown(Event):
    kind: str = _kind("backend_down")
    backend: str


@dataclass(frozen=True, kw_only=True)
class BackendUp(Event):
    kind: str = _kind("backend_up")
    backend: str


@dataclass(frozen=True, kw_only=True)
class BackendsReported(Event):
    """The balancer's periodic table of its backends (one dict each)."""

    kind: str = _kind("backends")
    backends: list[Any]


def _registry(*classes: type[Event]) -> dict[str, tuple[type[Event], ...]]:
    registry: dict[str, tuple[type[Event], ...]] = {}
    for cls in classes:
        kind = cls.__dataclass_fields__["kind"].default
        assert isinstance(kind, str), f"{cls.__name__} has no fixed kind"
        registry[kind] = (*registry.get(kind, ()), cls)
    return registry


#: Every typed event, by wire name (a name two publishers share has a class for each).
EVENT_TYPES: dict[str, tuple[type[Event], ...]] = _registry(
    Listening,
    ServerStopped,
    RequestReceived,
    ResponseSent,
    RequestRejected,
    Forwarded,
    UpstreamResponse,
    UpstreamError,
    Refused,
    CacheHit,
    CacheMiss,
    CacheStored,
    CacheSkipped,
    NotModified,
    BalancerStarted,
    BalancerStopped,
    BalancedRequest,
    BalancerError,
    BackendAdded,
    BackendDraining,
    BackendDrained,
    BackendRemoved,
    BackendDown,
    BackendUp,
    BackendsReported,
)


def _field_names(cls: type[Event]) -> tuple[frozenset[str], frozenset[str]]:
    """The names a class declares beyond the envelope, and those without a default."""
    declared = [
        item for item in dataclasses.fields(cls) if item.init and item.name not in _ENVELOPE
    ]
    required = [
        item.name
        for item in declared
        if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
    ]
    return frozenset(item.name for item in declared), frozenset(required)


#: Computed once: ``publish`` runs on every request of a server.
_FIELDS = {cls: _field_names(cls) for classes in EVENT_TYPES.values() for cls in classes}


def make_event(kind: str, source: str, time: float, fields: dict[str, Any]) -> Event:
    """The typed event for ``kind`` whose required fields ``fields`` has (the first such
    class registered), or a plain :class:`Event` holding ``fields`` in ``extra``.

    >>> make_event("request", "lb", 0.0, {"backend": "a", "status": 200, "method": "GET",
    ...     "target": "/", "client": "127.0.0.1", "latency": 0.01}).__class__.__name__
    'BalancedRequest'
    >>> make_event("sample", "autoscaler", 0.0, {"t": 1.5}).fields
    {'t': 1.5}
    """
    for cls in EVENT_TYPES.get(kind, ()):
        declared, required = _FIELDS[cls]
        named = {cls.renamed.get(key, key): value for key, value in fields.items()}
        if required <= named.keys():
            own = {key: value for key, value in named.items() if key in declared}
            extra = {
                key: value
                for key, value in fields.items()
                if cls.renamed.get(key, key) not in declared
            }
            return cls(source=source, time=time, extra=extra, **own)
    return Event(kind=kind, source=source, time=time, extra=dict(fields))


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
        #: Whether a published event goes anywhere (a subscriber, or the ``recent`` history,
        #: off with ``keep=0``): a server checks it on its hot path and builds no event when
        #: nobody would see it (building one costs tens of microseconds per request).
        self.active = keep > 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(event)`` for every later event; returns a function that stops it.

        >>> bus = EventBus("lb", keep=0)
        >>> bus.active
        False
        >>> stop = bus.subscribe(print)
        >>> bus.active
        True
        >>> stop()
        >>> bus.active
        False
        """
        self._subscribers.append(subscriber)
        self.active = True

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
            self._update_active()

        return unsubscribe

    def _update_active(self) -> None:
        self.active = bool(self._subscribers) or self.recent.maxlen != 0

    def publish(self, kind: str, **fields: Any) -> Event:
        """Record the event ``kind`` with ``fields`` (typed by :func:`make_event`) and hand it
        to every subscriber."""
        return self._deliver(make_event(kind, self.source, self._clock(), fields))

    def emit(self, event_type: type[Event], **fields: Any) -> Event:
        """Record a typed event (``bus.emit(CacheMiss, id=1, uri=u)``), stamped with this
        bus's source and clock, and hand it to every subscriber.

        >>> EventBus("proxy", clock=lambda: 2.0).emit(CacheMiss, id=1, uri="http://a/")
        CacheMiss(source='proxy', time=2.0, id=1, uri='http://a/')
        """
        return self._deliver(event_type(source=self.source, time=self._clock(), **fields))

    def _deliver(self, event: Event) -> Event:
        """A failing subscriber is dropped rather than allowed to break the server that
        published."""
        self.recent.append(event)
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                self._subscribers.remove(subscriber)
                self._update_active()
        return event
