"""The balancer's hot-path shortcuts never change what a backend receives: a keep-alive
client's forwarded head is reused only while its request line and headers repeat, and an
event bus nobody listens to builds no event. Real loopback sockets, bounded in time."""

from __future__ import annotations

import asyncio

import pytest

from deploylab.balancer.backend import DemoBackend
from deploylab.balancer.runtime import Balancer
from deploylab.events import EventBus

pytestmark = pytest.mark.timeout(60)


async def _keep_alive_exchanges(port: int, requests: list[bytes]) -> None:
    """Send ``requests`` one after the other on ONE connection, reading each answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            if not request.startswith(b"HEAD "):
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()


def test_a_changed_header_on_a_keep_alive_connection_is_forwarded_as_changed():
    base = b"GET /a HTTP/1.1\r\nHost: shop.test\r\n"
    requests = [
        base + b"X-Step: 1\r\n\r\n",
        base + b"X-Step: 1\r\n\r\n",  # the same again: the cached head
        base + b"X-Step: 2\r\n\r\n",  # one value changed
        base + b"X-Step: 2\r\nConnection: x-secret\r\nX-Secret: s\r\n\r\n",  # hop-by-hop named
        b"GET /a?q=1 HTTP/1.1\r\nHost: shop.test\r\nX-Step: 2\r\n\r\n",  # target changed
        b"GET http://other.test/a HTTP/1.1\r\nHost: shop.test\r\nX-Step: 3\r\n\r\n",
        b"HEAD /a HTTP/1.1\r\nHost: shop.test\r\nX-Step: 3\r\n\r\n",  # method changed
    ]

    record: list[dict] = []

    async def main():
        async with DemoBackend(name="a", record=record) as backend, Balancer([backend.url]) as lb:
            await _keep_alive_exchanges(lb.port, requests)

    asyncio.run(main())
    received = [(r["method"], r["target"], dict(r["headers"])) for r in record]
    seen = [(method, target, h.get("X-Step"), h.get("Host")) for method, target, h in received]
    assert seen == [
        ("GET", "/a", "1", "shop.test"),
        ("GET", "/a", "1", "shop.test"),
        ("GET", "/a", "2", "shop.test"),
        ("GET", "/a", "2", "shop.test"),
        ("GET", "/a?q=1", "2", "shop.test"),
        ("GET", "/a", "3", "other.test"),  # the absolute form's authority replaces Host
        ("HEAD", "/a", "3", "shop.test"),
    ]
    assert "X-Secret" not in received[3][2] and "Connection" not in received[3][2]
    assert all(h["X-Forwarded-For"] == "127.0.0.1" for _, _, h in received)


def test_a_bus_with_no_listener_is_inactive_until_someone_subscribes():
    bus = EventBus("lb", keep=0)
    assert not bus.active
    seen: list = []
    stop = bus.subscribe(seen.append)
    assert bus.active
    bus.publish("request", method="GET", target="/")
    stop()
    assert not bus.active
    assert len(seen) == 1 and len(bus.recent) == 0
    assert EventBus("lb").active  # the default keeps recent events for late joiners


def test_a_failing_subscriber_dropped_leaves_the_bus_inactive():
    bus = EventBus("lb", keep=0)

    def broken(event):
        raise RuntimeError("view gone")

    bus.subscribe(broken)
    bus.publish("request", method="GET", target="/")
    assert not bus.active
