"""Load-balancing views: algorithms side by side, live traffic, scale-up vs scale-out.

:func:`balancer_scenario` replays nginx's algorithms from :mod:`deploylab.balancer.core` into
plain data (one step per request: chosen server, SWRR current weights, connections, ip_hash
value); :class:`BalancerWidget` animates it in the browser (SVG + requestAnimationFrame) with a
fail/recover button per server, or follows a running :class:`~deploylab.balancer.runtime.Balancer`
(:meth:`BalancerWidget.follow`). :func:`scenario_figure` and :func:`scale_figure` are the static
matplotlib fallbacks.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import traitlets

from deploylab.balancer.core import (
    NoLiveUpstreams,
    Peer,
    Upstream,
    check_algorithm,
    ip_hash_value,
)
from deploylab.widgets.esm import widget_esm
from deploylab.widgets.labels import LabelledWidget

__all__ = ["BalancerWidget", "balancer_scenario", "scale_figure", "scenario_figure"]

#: Clients used by the ip_hash column: some share a /24 (and therefore a server).
DEFAULT_CLIENTS = (
    "10.0.1.5",
    "10.0.1.77",
    "10.0.2.9",
    "172.16.5.4",
    "192.168.0.10",
    "192.168.0.11",
    "10.9.8.7",
    "172.16.6.1",
)
#: How many steps each request stays open (so least_conn has connections to compare).
DEFAULT_DURATIONS = (3, 1, 1, 6, 1, 2, 1, 4, 1, 1, 2, 5)


def balancer_scenario(
    algorithms: Sequence[str] = ("round_robin", "least_conn", "ip_hash"),
    weights: Sequence[int] = (5, 1, 1),
    requests: int = 40,
    clients: Sequence[str] = DEFAULT_CLIENTS,
    durations: Sequence[int] = DEFAULT_DURATIONS,
    toggles: Sequence[tuple[int, int]] = (),
) -> dict:
    """Replay ``requests`` requests through each algorithm; plain data for the widget.

    Request ``i`` comes from ``clients[i % len]`` and stays open ``durations[i % len]`` steps.
    ``toggles`` are ``(step, server)`` pairs: at that step the server goes down (or comes
    back up if it was down).

    >>> data = balancer_scenario(["round_robin"], weights=(5, 1, 1), requests=7)
    >>> "".join("abc"[step["server"]] for step in data["columns"][0]["steps"])
    'aabacaa'
    """
    names = [chr(ord("a") + i) for i in range(len(weights))]
    columns = []
    for algorithm in [check_algorithm(name) for name in algorithms]:
        upstream = Upstream(
            [Peer(n, weight=w) for n, w in zip(names, weights, strict=True)], algorithm
        )
        open_until: list[tuple[int, Peer]] = []
        counts = [0] * len(names)
        steps = []
        for i in range(requests):
            for step, server in toggles:
                if step == i:
                    upstream.peers[server].down = not upstream.peers[server].down
            for end, peer in [item for item in open_until if item[0] <= i]:
                upstream.release(peer, now=float(i))
                open_until.remove((end, peer))
            client = clients[i % len(clients)]
            try:
                peer = upstream.pick(float(i), client=client)
                index = upstream.peers.index(peer)
                counts[index] += 1
                open_until.append((i + durations[i % len(durations)], peer))
            except NoLiveUpstreams:
                index = -1
            steps.append(
                {
                    "request": i,
                    "client": client,
                    "server": index,
                    "hash": (
                        ip_hash_value(client) % upstream.total_weight
                        if algorithm == "ip_hash"
                        else None
                    ),
                    "current_weights": [p.current_weight for p in upstream.peers],
                    "conns": [p.conns for p in upstream.peers],
                    "counts": list(counts),
                    "down": [p.down for p in upstream.peers],
                }
            )
        columns.append({"algorithm": algorithm, "steps": steps})
    return {"servers": names, "weights": list(weights), "columns": columns}


class BalancerWidget(LabelledWidget):
    """Requests flying from a balancer to servers, one column per algorithm.

    Each server has a fail/recover button: it takes the server down from the step being
    shown onward (the scenario is recomputed by the same core code). ``follow(balancer)``
    switches to live mode: dots follow the running balancer's ``request`` events.

    >>> widget = BalancerWidget(requests=10)
    >>> [column["algorithm"] for column in widget.scenario["columns"]]
    ['round_robin', 'least_conn', 'ip_hash']
    >>> widget.toggle = {"step": 3, "server": 0}
    >>> widget.scenario["columns"][0]["steps"][3]["down"][0]
    True
    """

    label_table = "balancer"
    _esm = widget_esm("balancer.js")

    _css = pathlib.Path(__file__).with_name("theme.css")
    scenario = traitlets.Dict().tag(sync=True)
    toggle = traitlets.Dict().tag(sync=True)  # set by the JS fail/recover buttons
    speed = traitlets.Float(2.0).tag(sync=True)  # requests per second per column
    live = traitlets.Bool(False).tag(sync=True)
    live_servers = traitlets.List(traitlets.Unicode()).tag(sync=True)
    live_requests = traitlets.List(traitlets.Dict()).tag(sync=True)
    live_counts = traitlets.List(traitlets.Int()).tag(sync=True)
    live_states = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(
        self,
        algorithms: Sequence[str] = ("round_robin", "least_conn", "ip_hash"),
        weights: Sequence[int] = (5, 1, 1),
        requests: int = 40,
        **kwargs,
    ) -> None:
        self._algorithms = [check_algorithm(name) for name in algorithms]
        self._weights = list(weights)
        self._requests = requests
        self._toggles: list[tuple[int, int]] = []
        super().__init__(scenario=self._replay(), **kwargs)
        self._unsubscribe = None

    @traitlets.observe("toggle")
    def _on_toggle(self, change) -> None:
        value = change["new"]
        if not value:
            return
        self._toggles.append((int(value["step"]), int(value["server"])))
        self.scenario = self._replay()

    def _replay(self) -> dict:
        """The scenario of this widget's settings with the servers toggled so far."""
        return balancer_scenario(
            self._algorithms, self._weights, self._requests, toggles=self._toggles
        )

    def follow(self, balancer, keep: int = 30) -> BalancerWidget:
        """Live mode: show a running balancer's requests and per-backend metrics."""
        self.live = True
        self.live_servers = list(balancer.backends)
        self.live_counts = [0] * len(self.live_servers)
        self.live_states = ["up"] * len(self.live_servers)
        sequence = 0

        def on_event(event) -> None:
            nonlocal sequence
            if event.kind == "request":
                name = event.fields["backend"]
                if name not in self.live_servers:
                    self.live_servers = [*self.live_servers, name]
                    self.live_counts = [*self.live_counts, 0]
                    self.live_states = [*self.live_states, "up"]
                index = self.live_servers.index(name)
                counts = list(self.live_counts)
                counts[index] += 1
                self.live_counts = counts
                sequence += 1
                self.live_requests = [
                    *self.live_requests[-keep:],
                    {"id": sequence, "server": index, "status": event.fields.get("status", 0)},
                ]
            elif event.kind == "backends":
                rows = event.fields["backends"]
                self.live_servers = [row["backend"] for row in rows]
                self.live_states = [row["state"] for row in rows]
                self.live_counts = [row["requests"] for row in rows]

        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = balancer.bus.subscribe(on_event)
        return self

    def unfollow(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.live = False


def scenario_figure(scenario: dict):
    """Static fallback: for each algorithm, the server chosen per request and the totals.

    >>> figure = scenario_figure(balancer_scenario(requests=12))
    >>> len(figure.axes)
    3
    """
    from matplotlib.figure import Figure

    columns = scenario["columns"]
    servers = scenario["servers"]
    figure = Figure(figsize=(4 * len(columns), 3.2), layout="constrained")
    colours = ["#4285f4", "#ea4335", "#fbbc04", "#34a853", "#9334e6", "#ff6d01"]
    for axes, column in zip(
        figure.subplots(1, len(columns), squeeze=False)[0], columns, strict=True
    ):
        steps = column["steps"]
        xs = [s["request"] for s in steps if s["server"] >= 0]
        ys = [s["server"] for s in steps if s["server"] >= 0]
        axes.scatter(xs, ys, c=[colours[y % len(colours)] for y in ys], s=18)
        failed = [s["request"] for s in steps if s["server"] < 0]
        axes.scatter(failed, [-0.8] * len(failed), marker="x", c="black", s=18)
        totals = steps[-1]["counts"] if steps else [0] * len(servers)
        axes.set_yticks(
            range(len(servers)),
            [
                f"{n} (w={w}, {t} req)"
                for n, w, t in zip(servers, scenario["weights"], totals, strict=True)
            ],
        )
        axes.set_xlabel("request number")
        axes.set_title(column["algorithm"])
        axes.set_ylim(-1.2, len(servers) - 0.5)
    return figure


def scale_figure(results: Sequence[dict]):
    """Static plot of :func:`deploylab.balancer.experiment.scale_experiment` results:
    throughput and p99 latency for scale-up (faster server) and scale-out (more servers).

    >>> figure = scale_figure([{"kind": "scale-out", "size": 1, "rps": 100, "p50_ms": 5,
    ...                         "p99_ms": 9}, {"kind": "scale-out", "size": 2, "rps": 190,
    ...                         "p50_ms": 5, "p99_ms": 8}])
    >>> len(figure.axes)
    2
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), layout="constrained")
    rate, latency = figure.subplots(1, 2)
    for kind, marker in (("scale-out", "o-"), ("scale-up", "s--")):
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        sizes = [r["size"] for r in rows]
        rate.plot(sizes, [r["rps"] for r in rows], marker, label=kind)
        latency.plot(sizes, [r["p99_ms"] for r in rows], marker, label=f"{kind} p99")
        latency.plot(sizes, [r["p50_ms"] for r in rows], marker, alpha=0.4, label=f"{kind} p50")
    rate.set_xlabel("servers (scale-out) or CPU speed-up (scale-up)")
    rate.set_ylabel("requests / s")
    latency.set_xlabel("servers (scale-out) or CPU speed-up (scale-up)")
    latency.set_ylabel("latency (ms)")
    rate.legend()
    latency.legend(fontsize=8)
    return figure
