"""Request-flow animation: requests travel as dots between clients, proxies and servers.

Two topologies (:func:`forward_topology`, :func:`reverse_topology`) and two modes: scripted
(a list of steps, e.g. :func:`forward_proxy_scenario`) and live (:meth:`RequestFlow.watch`
subscribes to the :class:`~deploylab.events.EventBus` of servers running in this kernel, so
requests from a cell or from curl animate as they happen). The animation runs in JavaScript
(``request_flow.js``); :func:`sequence_figure` draws the same steps with matplotlib when no
browser is there.

A step is a dict: ``src`` and ``dst`` node ids, ``label`` (what travels), ``addr`` (the source
address the receiving hop sees), ``kind`` (``request``, ``response``, ``hit``, ``refused``,
``error``) and ``note`` (a sentence for the event list).
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable

import traitlets

from deploylab.events import (
    CacheHit,
    Event,
    Forwarded,
    RequestReceived,
    RequestRejected,
    ResponseSent,
)
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

Step = dict


def step(
    src: str, dst: str, label: str, addr: str = "", kind: str = "request", note: str = ""
) -> Step:
    """One hop of a request or response.

    >>> step("client-a", "proxy", "GET /img", "127.0.0.2")["kind"]
    'request'
    """
    return {
        "src": src,
        "dst": dst,
        "label": label,
        "addr": addr,
        "kind": kind,
        "note": note or label,
    }


def forward_topology(
    clients: Iterable[str] = ("client-a", "client-b"),
    origins: Iterable[str] = ("origin",),
    proxy: str = "forward-proxy",
) -> dict:
    """Clients → forward proxy (with its cache) → the internet → origins.

    >>> [node["id"] for node in forward_topology()["nodes"]]
    ['client-a', 'client-b', 'forward-proxy', 'internet', 'origin']
    """
    clients, origins = list(clients), list(origins)
    nodes = [_node(c, "client", 70, _spread(i, len(clients))) for i, c in enumerate(clients)]
    nodes += [_node(proxy, "proxy", 270, 150, cache=True), _node("internet", "internet", 450, 150)]
    nodes += [_node(o, "server", 630, _spread(i, len(origins))) for i, o in enumerate(origins)]
    links = (
        [[c, proxy] for c in clients] + [[proxy, "internet"]] + [["internet", o] for o in origins]
    )
    return {"kind": "forward", "nodes": nodes, "links": links}


def reverse_topology(
    clients: Iterable[str] = ("client-a", "client-b"),
    backends: Iterable[str] = ("backend-1", "backend-2"),
    proxy: str = "reverse-proxy",
) -> dict:
    """Clients → the internet → reverse proxy → backends (in a private network).

    >>> len(reverse_topology()["links"])
    5
    """
    clients, backends = list(clients), list(backends)
    nodes = [_node(c, "client", 70, _spread(i, len(clients))) for i, c in enumerate(clients)]
    nodes += [_node("internet", "internet", 250, 150), _node(proxy, "proxy", 430, 150)]
    nodes += [_node(b, "server", 630, _spread(i, len(backends))) for i, b in enumerate(backends)]
    links = (
        [[c, "internet"] for c in clients] + [["internet", proxy]] + [[proxy, b] for b in backends]
    )
    return {"kind": "reverse", "nodes": nodes, "links": links}


def _spread(index: int, count: int) -> int:
    if count <= 1:
        return 150
    return int(50 + index * 200 / (count - 1))


def _node(node_id: str, kind: str, x: int, y: int, cache: bool = False) -> dict:
    return {"id": node_id, "label": node_id, "kind": kind, "x": x, "y": y, "cache": cache}


def forward_proxy_scenario(
    client_ips=("127.0.0.2", "127.0.0.4"), proxy_ip: str = "127.0.0.3"
) -> list[Step]:
    """Two clients fetch the same page through a caching forward proxy: the first is a MISS
    that reaches the origin (which sees only the proxy's address), the second a HIT that
    turns back at the proxy.

    >>> [s["kind"] for s in forward_proxy_scenario()]
    ['request', 'request', 'request', 'response', 'response', 'response', 'request', 'hit']
    """
    a, b = client_ips
    return [
        step(
            "client-a",
            "forward-proxy",
            "GET /news",
            a,
            note=f"client A ({a}) asks the proxy for http://origin/news",
        ),
        step(
            "forward-proxy",
            "internet",
            "GET /news",
            proxy_ip,
            note="cache MISS: the proxy fetches it itself",
        ),
        step(
            "internet",
            "origin",
            "GET /news",
            proxy_ip,
            note=f"the origin sees {proxy_ip}, not {a}: the client is hidden",
        ),
        step(
            "origin",
            "internet",
            "200 max-age=60",
            "",
            "response",
            "the origin answers: cacheable for 60 s",
        ),
        step(
            "internet", "forward-proxy", "200 max-age=60", "", "response", "the proxy stores a copy"
        ),
        step(
            "forward-proxy",
            "client-a",
            "200 X-Cache: MISS",
            "",
            "response",
            "client A gets the page",
        ),
        step(
            "client-b",
            "forward-proxy",
            "GET /news",
            b,
            note=f"client B ({b}) asks for the same page",
        ),
        step(
            "forward-proxy",
            "client-b",
            "200 X-Cache: HIT, Age: 3",
            "",
            "hit",
            "cache HIT: answered from the proxy, the origin is not asked",
        ),
    ]


def reverse_proxy_scenario(
    requests: int = 4, backends=("backend-1", "backend-2"), client_ip: str = "203.0.113.7"
) -> list[Step]:
    """Requests spread over backends in turn; each backend learns the client from
    ``X-Forwarded-For`` while the client only ever sees the proxy.

    >>> [s["dst"] for s in reverse_proxy_scenario(2) if s["src"] == "reverse-proxy"][::2]
    ['backend-1', 'backend-2']
    """
    steps: list[Step] = []
    for number in range(requests):
        backend = backends[number % len(backends)]
        client = "client-a" if number % 2 == 0 else "client-b"
        steps += [
            step(client, "internet", f"GET /page{number}", client_ip),
            step(
                "internet",
                "reverse-proxy",
                f"GET /page{number}",
                client_ip,
                note="the client only knows the proxy's address",
            ),
            step(
                "reverse-proxy",
                backend,
                f"GET /page{number}",
                f"127.0.0.1 (X-Forwarded-For: {client_ip})",
                note=f"round robin picks {backend}; X-Real-IP tells it the client",
            ),
            step(backend, "reverse-proxy", "200", "", "response", "the backend answers the proxy"),
            step(
                "reverse-proxy",
                "internet",
                "200 Server: deploylab",
                "",
                "response",
                "Server header rewritten: the backend stays hidden",
            ),
            step("internet", client, "200", "", "response"),
        ]
    return steps


class RequestFlow(LabelledWidget):
    """The animated request flow (selector ``.dl-request-flow``).

    >>> flow = RequestFlow(forward_topology(), forward_proxy_scenario())
    >>> len(flow.steps), flow.mode
    (8, 'scripted')
    """

    label_table = "request_flow"
    _esm = widget_esm("request_flow.js")

    _css = pathlib.Path(__file__).with_name("theme.css")
    topology = traitlets.Dict().tag(sync=True)
    steps = traitlets.List(traitlets.Dict()).tag(sync=True)
    mode = traitlets.Unicode("scripted").tag(sync=True)
    playing = traitlets.Bool(True).tag(sync=True)
    speed = traitlets.Float(1.0).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    #: How many of the oldest steps were dropped to keep the list bounded (live mode).
    dropped = traitlets.Int(0).tag(sync=True)
    max_steps = 300

    def __init__(
        self, topology: dict | None = None, steps: list[Step] | None = None, **kwargs
    ) -> None:
        super().__init__(topology=topology or forward_topology(), steps=list(steps or []), **kwargs)
        self._unsubscribe: list[Callable[[], None]] = []

    # live mode -------------------------------------------------------------------------------
    def add_steps(self, new: list[Step]) -> None:
        """Append steps (the browser animates them in turn)."""
        self.steps = (self.steps + new)[-self.max_steps :]

    def watch(self, *servers, clients: dict[str, str] | None = None) -> RequestFlow:
        """Animate the events of running ``servers`` (proxies and origins/backends whose
        ``name`` are node ids). ``clients`` maps client IPs to client node ids (others go to
        the first client node)."""
        self.mode = "live"
        client_nodes = [n["id"] for n in self.topology["nodes"] if n["kind"] == "client"]
        proxy_ids = {n["id"] for n in self.topology["nodes"] if n["kind"] == "proxy"}
        addresses = {}
        for server in servers:
            try:
                host, port = server.address
            except RuntimeError:
                continue  # not started yet: its address is unknown
            addresses[f"{host}:{port}"] = server.name
        translate = _EventTranslator(
            self.topology["kind"], client_nodes, clients or {}, addresses, proxy_ids
        )
        for server in servers:
            self._unsubscribe.append(
                server.events.subscribe(lambda event: self.add_steps(translate(event)))
            )
        return self

    def unwatch(self) -> None:
        """Stop following the servers."""
        for stop in self._unsubscribe:
            stop()
        self._unsubscribe.clear()

    def figure(self):
        """The static fallback: a matplotlib sequence diagram of the steps so far."""
        return sequence_figure(self.topology, self.steps)


class _EventTranslator:
    """Turns server events into animation steps, with the addresses each hop really saw."""

    def __init__(
        self, kind: str, client_nodes, clients: dict[str, str], addresses, proxy_ids
    ) -> None:
        self.kind = kind
        self.client_nodes = client_nodes
        self.clients = dict(clients)
        self.addresses = addresses
        self.forwarded: set[tuple[str, int]] = set()
        self.proxy_ids = proxy_ids
        self.pending_client: dict[tuple[str, int], str] = {}

    def _client_node(self, address: str) -> str:
        ip = address.rsplit(":", 1)[0].strip("[]")
        if ip not in self.clients:
            free = [n for n in self.client_nodes if n not in self.clients.values()]
            self.clients[ip] = free[0] if free else self.client_nodes[0]
        return self.clients[ip]

    def __call__(self, event: Event) -> list[Step]:
        source = event.source
        is_proxy = source in self.proxy_ids
        key = (source, getattr(event, "id", 0))
        if isinstance(event, RequestReceived):
            return self._request(event, key) if is_proxy else self._arrival(event)
        if isinstance(event, Forwarded) and is_proxy:
            return self._forward(event, key)
        if isinstance(event, CacheHit):
            return [
                step(
                    source,
                    self.pending_client.get(key, self.client_nodes[0]),
                    f"HIT (Age {event.age})",
                    kind="hit",
                    note=f"cache HIT for {event.uri}: the origin is not asked",
                )
            ]
        if isinstance(event, ResponseSent):
            return self._response(event, key) if is_proxy else self._origin_response(event)
        if isinstance(event, RequestRejected):
            client = self._client_node(event.client)
            return [
                step(
                    source,
                    client,
                    f"{event.status}",
                    kind="error",
                    note=f"{source} refused a malformed request: {event.status} {event.detail}",
                )
            ]
        return []  # cache misses, upstream answers…: no hop of their own

    def _request(self, event: RequestReceived, key: tuple[str, int]) -> list[Step]:
        """A client's request reaches the proxy."""
        source = event.source
        client = self._client_node(event.client)
        self.pending_client[key] = client
        target = event.target if len(event.target) < 40 else event.target[:37] + "…"
        ip = event.client.rsplit(":", 1)[0]
        label = f"{event.method} {target}"
        note = f"{source} got {label} from {ip}"
        if self.kind == "reverse":
            return [
                step(client, "internet", label, ip),
                step("internet", source, label, ip, note=note),
            ]
        return [step(client, source, label, ip, note=note)]

    def _arrival(self, event: RequestReceived) -> list[Step]:
        """A request reaches an origin or a backend: the address it sees it come from."""
        headers = {name.lower(): value for name, value in event.headers}
        ip = event.client.rsplit(":", 1)[0]
        seen = ip + (
            f" (X-Forwarded-For: {headers['x-forwarded-for']})"
            if "x-forwarded-for" in headers
            else ""
        )
        if self.kind == "forward":
            return [
                step(
                    "internet",
                    event.source,
                    f"{event.method} {event.target}",
                    seen,
                    note=f"{event.source} sees the request coming from {seen}",
                )
            ]
        return []  # reverse: the proxy's "forward" event already drew this hop

    def _forward(self, event: Forwarded, key: tuple[str, int]) -> list[Step]:
        """The proxy sends the request on."""
        source = event.source
        self.forwarded.add(key)
        headers = {name.lower(): value for name, value in event.headers}
        if self.kind == "forward":
            return [
                step(
                    source,
                    "internet",
                    f"→ {event.upstream}",
                    event.local_address,
                    note=f"{source} connects to {event.upstream} from {event.local_address}",
                )
            ]
        backend = self.addresses.get(event.upstream, event.upstream)
        xff = headers.get("x-forwarded-for", "")
        return [
            step(
                source,
                backend,
                f"{event.target}",
                f"127.0.0.1 (X-Forwarded-For: {xff})",
                note=f"{source} forwards to a backend; X-Real-IP: {headers.get('x-real-ip', '?')}",
            )
        ]

    def _origin_response(self, event: ResponseSent) -> list[Step]:
        """An origin or a backend answers."""
        source = event.source
        if self.kind == "forward":
            return [
                step(
                    source,
                    "internet",
                    str(event.status),
                    kind="response",
                    note=f"{source} answers {event.status}",
                )
            ]
        proxies = sorted(self.proxy_ids)
        return [
            step(source, proxies[0] if proxies else "internet", str(event.status), kind="response")
        ]

    def _response(self, event: ResponseSent, key: tuple[str, int]) -> list[Step]:
        """The proxy answers its client."""
        source = event.source
        client = self.pending_client.pop(key, None)
        headers = {name.lower(): value for name, value in event.headers}
        label = f"{event.status}" + (
            f" X-Cache: {headers['x-cache']}" if "x-cache" in headers else ""
        )
        if headers.get("x-cache") == "HIT" or client is None:
            return []  # the HIT step already went back to the client
        forwarded = key in self.forwarded
        self.forwarded.discard(key)
        kind = "error" if event.status >= 500 else "response" if forwarded else "refused"
        if self.kind == "forward":
            back = (
                [step("internet", source, str(event.status), kind="response")]
                if forwarded and kind != "error"
                else []
            )
            return [
                *back,
                step(source, client, label, kind=kind, note=f"{source} answers {client}: {label}"),
            ]
        return [
            step(source, "internet", label, kind=kind),
            step("internet", client, label, kind=kind),
        ]


def sequence_figure(topology: dict, steps: list[Step]):
    """A sequence diagram of ``steps`` (matplotlib): one lifeline per node, one arrow per hop.

    >>> figure = sequence_figure(forward_topology(), forward_proxy_scenario())
    >>> len(figure.axes[0].patches) >= 8
    True
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

    nodes = [n["id"] for n in topology["nodes"]]
    column = {node: index for index, node in enumerate(nodes)}
    height = max(3.0, 0.45 * len(steps) + 1.2)
    figure = Figure(figsize=(10, height))
    axes = figure.add_subplot()
    axes.set_xlim(-0.6, len(nodes) - 0.4)
    axes.set_ylim(-len(steps) - 0.5, 1.0)
    axes.axis("off")
    colours = {
        "request": "#1a73e8",
        "response": "#188038",
        "hit": "#e8710a",
        "refused": "#d93025",
        "error": "#d93025",
    }
    for node, index in column.items():
        axes.text(
            index,
            0.5,
            node,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
            bbox={"boxstyle": "round", "facecolor": "#e8f0fe", "edgecolor": "#3367d6"},
        )
        axes.plot([index, index], [0.2, -len(steps) - 0.3], color="#bbbbbb", linewidth=1)
    for row, hop in enumerate(steps, start=1):
        if hop["src"] not in column or hop["dst"] not in column:
            continue
        x0, x1, y = column[hop["src"]], column[hop["dst"]], -row
        axes.add_patch(
            FancyArrowPatch(
                (x0, y),
                (x1, y),
                arrowstyle="-|>",
                mutation_scale=12,
                color=colours.get(hop["kind"], "#444444"),
            )
        )
        text = hop["label"] + (f"  [from {hop['addr']}]" if hop.get("addr") else "")
        axes.text((x0 + x1) / 2, y + 0.12, text, ha="center", va="bottom", fontsize=7)
    figure.tight_layout()
    return figure
