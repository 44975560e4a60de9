"""The request-flow widget: live mode follows real servers with the addresses each hop saw."""

from __future__ import annotations

import httpx
import pytest

from deploylab.proxy import ForwardProxy, OriginServer, ReverseProxy
from deploylab.widgets.request_flow import (
    RequestFlow,
    forward_proxy_scenario,
    forward_topology,
    reverse_topology,
    sequence_figure,
)

#: The origins here are on loopback, which a forward proxy refuses unless allowed.
LOCAL = ["127.0.0.0/8", "::1/128"]
pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_live_forward_flow_shows_client_then_proxy_address_and_a_hit():
    flow = RequestFlow(forward_topology(origins=["origin"]))
    async with (
        OriginServer(name="origin") as origin,
        ForwardProxy(allow_destinations=LOCAL, source_address="127.0.0.3") as proxy,
    ):
        flow.watch(proxy, origin)
        transport = httpx.AsyncHTTPTransport(proxy=proxy.url)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            await client.get(origin.url + "/cache/max-age/60")
            await client.get(origin.url + "/cache/max-age/60")
        flow.unwatch()
    hops = [(s["src"], s["dst"], s["kind"]) for s in flow.steps]
    assert hops[0] == ("client-a", "forward-proxy", "request")
    at_origin = next(s for s in flow.steps if s["dst"] == "origin")
    assert at_origin["addr"] == "127.0.0.3"  # what the origin really saw
    assert flow.steps[0]["addr"] == "127.0.0.1"
    assert hops[-2:] == [
        ("client-a", "forward-proxy", "request"),
        ("forward-proxy", "client-a", "hit"),
    ]
    assert sum(1 for s in flow.steps if s["dst"] == "origin") == 1  # the hit never reached it
    assert flow.mode == "live"


async def test_live_reverse_flow_names_backends_in_turn():
    flow = RequestFlow(reverse_topology(backends=["a", "b"]))
    async with (
        OriginServer(name="a") as a,
        OriginServer(name="b") as b,
        ReverseProxy([a.url, b.url]) as proxy,
    ):
        flow.watch(proxy, a, b)
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(2):
                await client.get(proxy.url + "/")
    to_backends = [
        s["dst"] for s in flow.steps if s["src"] == "reverse-proxy" and s["dst"] in ("a", "b")
    ]
    assert to_backends == ["a", "b"]
    assert all(
        "X-Forwarded-For: 127.0.0.1" in s["addr"] for s in flow.steps if s["dst"] in ("a", "b")
    )


def test_static_fallback_draws_every_hop():
    steps = forward_proxy_scenario()
    figure = sequence_figure(forward_topology(), steps)
    assert len(figure.axes[0].patches) == len(steps)
