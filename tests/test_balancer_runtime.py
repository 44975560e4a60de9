"""The balancer on real loopback sockets: sequences, headers, retries, runtime changes, L4."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
from conftest import free_port, wait_for_port

from deploylab.balancer import RetryPolicy
from deploylab.balancer.backend import DemoBackend, read_backend_url
from deploylab.balancer.runtime import Balancer, parse_backend

pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(coro)


async def _names(url: str, count: int, path: str = "/") -> list[str]:
    async with httpx.AsyncClient() as client:
        return [(await client.get(url + path)).text.strip() for _ in range(count)]


async def _dying_server():
    """Accepts, reads one request, then closes without answering (a crash mid-request)."""
    seen = []

    async def handle(reader, writer):
        seen.append(await reader.read(65536))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


def test_weighted_sequence_through_the_balancer():
    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            DemoBackend(name="c") as c,
            Balancer([f"{a.url},weight=5", b.url, c.url]) as lb,
        ):
            return await _names(lb.url, 14)

    assert run(main()) == list("aabacaa") * 2


def test_forwarded_headers_and_methods():
    async def main():
        async with DemoBackend(name="a") as a, Balancer([a.url]) as lb:
            async with httpx.AsyncClient() as client:
                echoed = (
                    await client.get(
                        lb.url + "/headers", headers={"X-Forwarded-For": "203.0.113.9"}
                    )
                ).json()
                posted = await client.post(lb.url + "/", content=b"x" * 10000)
                head = await client.head(lb.url + "/")
                status = lb.status()
            return echoed, posted, head, status

    echoed, posted, head, status = run(main())
    assert echoed["headers"]["X-Forwarded-For"] == "203.0.113.9, 127.0.0.1"
    assert echoed["headers"]["X-Real-IP"] == "127.0.0.1"
    assert posted.status_code == 200 and posted.text == "a\n"
    assert head.status_code == 200 and head.content == b""
    assert status["backends"][0]["requests"] == 3
    assert status["backends"][0]["state"] == "up"


def test_get_retried_on_dead_backend_post_not_retried_then_502():
    async def main():
        dying, dying_port, seen = await _dying_server()
        async with DemoBackend(name="ok") as ok:
            async with (
                Balancer([f"127.0.0.1:{dying_port}", ok.url]) as lb,
                httpx.AsyncClient() as client,
            ):
                get = await client.get(lb.url + "/")
                lb.upstream.find(f"127.0.0.1:{dying_port}").fails = 0
                lb.upstream.peers[0].current_weight = 10  # make the dying one next
                post = await client.post(lb.url + "/", content=b"order=1")
            await ok.stop()
            async with (
                Balancer([f"127.0.0.1:{dying_port}", ok.url]) as lb2,
                httpx.AsyncClient() as client,
            ):
                none_left = await client.get(lb2.url + "/")
        dying.close()
        return get, post, none_left, seen

    get, post, none_left, seen = run(main())
    assert get.status_code == 200 and get.text == "ok\n"  # retried on the next server
    assert post.status_code == 502  # sent to the dying server: not retried
    assert any(b"POST" in request for request in seen)
    assert none_left.status_code == 502


def test_refused_connection_counts_as_failure_and_recovers():
    async def main():
        dead_port = free_port()
        async with (
            DemoBackend(name="ok") as ok,
            Balancer([f"127.0.0.1:{dead_port},fail_timeout=1", ok.url]) as lb,
        ):
            names = await _names(lb.url, 4)
            dead = lb.upstream.find(f"127.0.0.1:{dead_port}")
            failed_state = dead.state(asyncio.get_running_loop().time())
            events = [e.kind for e in lb.bus.recent]
            return names, failed_state, events

    names, failed_state, events = run(main())
    assert names == ["ok"] * 4
    assert failed_state == "failed"
    assert "attempt_failed" in events


def test_status_codes_retried_only_when_listed():
    async def main():
        async with DemoBackend(name="a") as a, DemoBackend(name="b") as b:
            async with Balancer([a.url, b.url]) as lb:
                plain = await _names(lb.url, 2, "/status/503")
            policy = RetryPolicy(["error", "timeout", "http_503"])
            async with (
                Balancer([a.url, b.url], retry=policy) as lb,
                httpx.AsyncClient() as client,
            ):
                retried = await client.get(lb.url + "/status/503")
            return plain, retried, a.requests + b.requests

    plain, retried, total = run(main())
    assert plain == ["a", "b"]  # 503 passed through without retry
    assert retried.status_code == 503  # both tried; the client gets the last result
    assert total == 4


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_runtime_add_drain_remove_under_load_without_failures(loop):
    runner = pytest.importorskip("uvloop").run if loop == "uvloop" else asyncio.run

    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            DemoBackend(name="c") as c,
            Balancer([a.url], request_events=False) as lb,
        ):
            statuses: list[int] = []
            names: list[str] = []
            stop = asyncio.Event()

            async def load():
                async with httpx.AsyncClient() as client:
                    for _ in range(400):
                        if stop.is_set():
                            return
                        response = await client.get(lb.url + "/sleep/2")
                        statuses.append(response.status_code)
                        names.append(response.text.strip())

            workers = [asyncio.create_task(load()) for _ in range(8)]
            await asyncio.sleep(0.2)
            lb.add_backend(b.url, weight=2)
            lb.add_backend(c.url)
            await asyncio.sleep(0.3)
            await lb.drain_backend(a.url, timeout=5)
            drained_active = lb.upstream.find(f"127.0.0.1:{a.port}").conns
            lb.remove_backend(a.url)
            after_remove = len(names)
            lb.mark_down(c.url)
            await asyncio.sleep(0.3)
            lb.mark_down(c.url, False)
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*workers)
            return statuses, names, drained_active, after_remove, lb.backends

    statuses, names, drained_active, after_remove, backends = runner(main())
    assert len(statuses) > 100
    assert set(statuses) == {200}, "no request may fail while backends change"
    assert drained_active == 0
    assert {"a", "b", "c"} <= set(names)
    assert "a" not in names[after_remove + 8 :]  # at most the in-flight ones finish on a
    assert len(backends) == 2


def test_layer4_balances_connections_not_requests():
    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            Balancer([a.url, b.url], layer=4) as lb,
        ):
            same_connection = await _names(lb.url, 4)
            fresh = []
            for _ in range(4):
                fresh += await _names(lb.url, 1)
            async with httpx.AsyncClient() as client:
                echoed = (await client.get(lb.url + "/headers")).json()
            return same_connection, fresh, echoed

    same_connection, fresh, echoed = run(main())
    assert len(set(same_connection)) == 1
    assert fresh[0] != same_connection[0]  # the first connection went there
    assert fresh[0::2] == [fresh[0]] * 2 and fresh[1::2] == [fresh[1]] * 2
    assert set(fresh) == {"a", "b"}
    assert "X-Forwarded-For" not in echoed["headers"]  # L4 cannot add headers


def test_least_conn_avoids_busy_backend():
    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            Balancer([a.url, b.url], algorithm="least_conn") as lb,
        ):
            async with httpx.AsyncClient() as client:
                slow = asyncio.create_task(client.get(lb.url + "/sleep/400"))
                await asyncio.sleep(0.1)
                quick = [(await client.get(lb.url + "/")).text.strip() for _ in range(4)]
                slow_name = (await slow).text.strip()
            return slow_name, quick

    slow_name, quick = run(main())
    assert slow_name not in quick


def test_parse_backend_errors_name_the_value():
    with pytest.raises(ValueError, match="weight='x'"):
        parse_backend("http://127.0.0.1:80,weight=x")
    with pytest.raises(ValueError, match="'colour'"):
        parse_backend("127.0.0.1:80,colour=red")
    assert parse_backend("localhost:8080").name == "127.0.0.1:8080"


def test_toml_config(tmp_path):
    config = tmp_path / "lb.toml"
    config.write_text(
        'algorithm = "least_conn"\nlayer = 7\n[[backend]]\nurl = "http://127.0.0.1:9"\n'
        'weight = 3\n[[backend]]\nurl = "http://127.0.0.1:10"\nbackup = true\n'
    )
    lb = Balancer.from_toml(str(config))
    assert lb.upstream.algorithm == "least_conn"
    assert [p.weight for p in lb.upstream.peers] == [3]
    assert [p.name for p in lb.upstream.backups] == ["127.0.0.1:10"]


def test_cli_serve_backend_and_balancer_and_control_it(processes, tmp_path):
    b1, b2, lb = free_port(), free_port(), free_port()
    processes.deploylab("serve", "backend", "--port", str(b1), "--name", "one")
    processes.deploylab("serve", "backend", "--port", str(b2), "--name", "two", "--work-ms", "1")
    control, token_file = free_port(), tmp_path / "token"
    processes.deploylab(
        "serve",
        "balancer",
        "--port",
        str(lb),
        "--backend",
        f"http://127.0.0.1:{b1}",
        "--control",
        str(control),
        "--control-token-file",
        str(token_file),
    )
    for port in (b1, b2, lb, control):
        wait_for_port(port)

    def balancer(*arguments: str) -> dict:
        command = [sys.executable, "-m", "deploylab.cli", "balancer", *arguments]
        command += ["--control", str(control), "--token-file", str(token_file)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)

    assert balancer("add", f"http://127.0.0.1:{b2}") == {"added": f"127.0.0.1:{b2}"}
    names = [httpx.get(f"http://127.0.0.1:{lb}/").text.strip() for _ in range(4)]
    assert names == ["one", "two", "one", "two"]
    status = balancer("status")
    assert [b["requests"] for b in status["backends"]] == [2, 2]
    # the data port no longer tells anyone the backends' addresses
    assert b"127.0.0.1" not in httpx.get(f"http://127.0.0.1:{lb}/_deploylab/status").content
    # the control port wants the token
    refused = httpx.get(f"http://127.0.0.1:{control}/status", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 401 and oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert balancer("drain", f"http://127.0.0.1:{b1}") == {"drained": f"http://127.0.0.1:{b1}"}
    assert balancer("remove", f"http://127.0.0.1:{b1}") == {"removed": f"127.0.0.1:{b1}"}
    names = {httpx.get(f"http://127.0.0.1:{lb}/").text.strip() for _ in range(4)}
    assert names == {"two"}


def test_active_health_checks_take_a_dead_backend_out_and_back():
    from deploylab.balancer import HealthCheck

    async def main():
        async with DemoBackend(name="a") as a, DemoBackend(name="b") as b:
            b_port = b.port
            check = HealthCheck(interval=0.05, timeout=0.5, rise=2, fall=1, path="/health")
            async with Balancer([a.url, b.url], health_check=check, metrics_interval=0.1) as lb:
                await b.stop()
                await asyncio.sleep(0.3)
                peer_b = lb.upstream.find(f"127.0.0.1:{b_port}")
                down_state = peer_b.state(asyncio.get_running_loop().time())
                while_down = await _names(lb.url, 4)
                revived = await DemoBackend(port=b_port, name="b").start()
                await asyncio.sleep(0.4)
                up_state = peer_b.state(asyncio.get_running_loop().time())
                after = await _names(lb.url, 4)
                await revived.stop()
                kinds = [e.kind for e in lb.bus.recent]
                metrics = [e for e in lb.bus.recent if e.kind == "backends"]
            return down_state, while_down, up_state, after, kinds, metrics

    down_state, while_down, up_state, after, kinds, metrics = run(main())
    assert down_state == "unhealthy"
    assert while_down == ["a"] * 4  # no request was even tried on b
    assert up_state == "up"
    assert "b" in after
    assert "backend_unhealthy" in kinds and "backend_healthy" in kinds
    assert metrics and {
        "backend",
        "requests",
        "active",
        "failures",
        "p50_ms",
        "p99_ms",
        "state",
    } <= set(metrics[-1].fields["backends"][0])


def test_request_events_feed_views():
    async def main():
        async with DemoBackend(name="a") as a, Balancer([a.url]) as lb:
            seen = []
            lb.bus.subscribe(seen.append)
            await _names(lb.url, 3, "/x?y=1")
            return [e.fields for e in seen if e.kind == "request"]

    requests = run(main())
    assert [r["target"] for r in requests] == ["/x?y=1"] * 3
    assert all(r["status"] == 200 and r["latency"] > 0 for r in requests)


def test_layer4_drain_waits_for_open_connections():
    async def main():
        async with (
            DemoBackend(name="a") as a,
            DemoBackend(name="b") as b,
            Balancer([a.url, b.url], layer=4) as lb,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"a\n")  # this connection is pinned to a
            drain = asyncio.create_task(lb.drain_backend(a.url, timeout=5))
            await asyncio.sleep(0.1)
            pending_while_open = not drain.done()
            fresh = await _names(lb.url, 2)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # still served by a
            still_a = await reader.readuntil(b"a\n")
            writer.close()
            await drain
            return pending_while_open, fresh, still_a

    pending_while_open, fresh, still_a = run(main())
    assert pending_while_open
    assert fresh == ["b", "b"]
    assert still_a.endswith(b"a\n")


def test_a_backend_that_never_says_where_it_listens_fails_in_time():
    """A backend process stuck before it listens (here: one that only sleeps) must not freeze
    the lesson that started it: reading its address gives up after the timeout."""
    silent = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.PIPE, text=True
    )
    try:
        with pytest.raises(RuntimeError) as failure:
            read_backend_url(silent, timeout=0.3)
    finally:
        silent.kill()
        silent.wait(timeout=10)
        silent.stdout.close()
    assert str(failure.value) == f"backend process {silent.pid} printed no address within 0.3 s"


def test_a_drain_that_cannot_finish_says_which_backend_and_what_is_open():
    async def main():
        async with DemoBackend(name="a") as a, Balancer([a.url], layer=4) as lb:
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"a\n")  # held open: the drain cannot finish
            try:
                with pytest.raises(TimeoutError) as timed_out:
                    await lb.drain_backend(a.url, timeout=0.2)
            finally:
                writer.close()
            return str(timed_out.value), a.url

    message, url = run(main())
    assert message == (
        f"draining {url}: 1 still in flight after 0.2 s (requests, or connections at layer 4)"
    )


def test_oversized_requests_get_the_right_status_and_balancer_keeps_serving():
    async def raw(port: int, payload: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        answer = await reader.read(200)
        writer.close()
        return answer

    async def main():
        async with DemoBackend(name="a") as a, Balancer([a.url]) as lb:
            long_url = await raw(lb.port, b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
            many = await raw(lb.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            garbage = await raw(lb.port, b"NOT HTTP AT ALL\r\n\r\n")
            still = await _names(lb.url, 1)
            return long_url, many, garbage, still

    long_url, many, garbage, still = run(main())
    assert long_url.startswith(b"HTTP/1.1 414")
    assert many.startswith(b"HTTP/1.1 431")
    assert garbage.startswith(b"HTTP/1.1 400")
    assert still == ["a"]


def test_large_response_to_slow_client_is_complete():
    async def main():
        big = b"y" * (4 * 1024 * 1024)

        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
            await writer.drain()
            await reader.read()  # keep the connection until the balancer closes it

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Balancer([f"127.0.0.1:{port}"]) as lb:
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.3)  # let buffers fill: the balancer must pause the backend
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.readexactly(len(big))
            writer.close()
        server.close()
        return head, body == big

    head, same = run(main())
    assert head.startswith(b"HTTP/1.1 200") and same


def test_next_upstream_tries_bounds_retries():
    async def main():
        dead = f"127.0.0.1:{free_port()}"
        async with (
            DemoBackend(name="ok") as ok,
            Balancer([dead, ok.url], retry=RetryPolicy(tries=1)) as one_try,
            httpx.AsyncClient() as client,
        ):
            return (await client.get(one_try.url + "/")).status_code

    assert run(main()) == 502  # the dead server was the only try allowed


def test_response_delimited_by_close_is_passed_whole():
    async def main():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Balancer([f"127.0.0.1:{port}"]) as lb:
            reader, writer = await asyncio.open_connection("127.0.0.1", lb.port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            failures = lb.status()["backends"][0]["failures"]
        server.close()
        return answer, failures

    answer, failures = run(main())
    assert answer.endswith(b"until the end")
    assert failures == 0


def test_clients_leaving_mid_request_leave_no_active_requests_behind():
    uvloop = pytest.importorskip("uvloop")  # uvloop raises on writes to closed transports

    async def main():
        async with DemoBackend(name="a") as a, Balancer([a.url]) as lb:
            for _ in range(20):
                _, writer = await asyncio.open_connection("127.0.0.1", lb.port)
                writer.write(b"GET /sleep/50 HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                writer.close()  # gone before the answer
            await asyncio.sleep(0.3)
            active = lb.status()["backends"][0]["active"]
            await asyncio.wait_for(lb.drain_backend(a.url), 1)
            return active, lb.status()["backends"][0]

    active, row = uvloop.run(main())
    assert active == 0
    assert row["requests"] == 20 and row["failures"] == 0
