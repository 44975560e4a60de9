"""More hostile clients and backends against the balancer and the reverse proxy, each case
sent on the same bytes to a real nginx 1.22 (set up as in tests/test_hostile_nginx.py) where
nginx defines a behaviour. Cases already covered by test_hostile_*.py are not repeated.

Everything is on 127.0.0.1 and bounded in time; each request asks ``Connection: close`` so
that an exchange ends when the front closes, not when a read times out.
"""

from __future__ import annotations

import asyncio

import pytest
from hostile_kit import ScriptedBackend, ServerProcess, raw_exchange, response, status_of, statuses
from test_hostile_nginx import NGINX as NGINX_CONF
from test_hostile_nginx import Front

from deploylab.http import HTTPError, RequestParser, ResponseParser
from deploylab.proxy import ForwardProxy, ReverseProxy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

NGINX = pytest.param("nginx", marks=pytest.mark.nginx)
FRONTS = [NGINX, "balancer", "reverse-proxy"]
CLOSE = b"Connection: close\r\n"


def echo_backend() -> ScriptedBackend:
    return ScriptedBackend(lambda head, index: response(head.split(b" ")[1]))


async def exchange(address, data: bytes, read_timeout: float = 2.0) -> bytes:
    return await raw_exchange(address, data, read_timeout=read_timeout)


# -- a client's trailers never become request headers ---------------------------------------
@pytest.mark.parametrize("front", FRONTS)
async def test_request_trailer_fields_never_reach_the_backend_as_headers(front):
    """A chunked body's trailer section is not the header section (RFC 9110 §6.5.1: not
    merged unless the field allows it). Merged, a trailer ``Host`` got past the one-Host rule
    the front enforces on headers, and any field got past rules applied to the head."""
    backend = echo_backend()
    data = (
        b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" + CLOSE + b"\r\n"
        b"3\r\nabc\r\n0\r\nHost: evil\r\nX-Injected: 1\r\n\r\n"
    )
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, data)
    assert status_of(reply) == 200 and reply.endswith(b"/t")
    (head,) = backend.heads
    assert head.lower().count(b"\r\nhost:") == 1 and b"evil" not in head
    assert b"X-Injected" not in head


def test_trailer_fields_are_not_headers_in_the_shared_parser():
    request = RequestParser().feed(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\nHost: evil\r\n\r\n"
    )[0]
    reply = ResponseParser().feed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\nSet-Cookie: evil=1\r\n\r\n"
    )[0]
    assert request.headers == [("Host", "x"), ("Transfer-Encoding", "chunked")]
    assert (request.body, reply.body) == (b"a", b"a")
    assert reply.headers == [("Transfer-Encoding", "chunked")]


def test_trailers_count_against_the_header_limit():
    big = b"".join(b"X-%d: %s\r\n" % (i, b"t" * 1000) for i in range(40))
    with pytest.raises(HTTPError) as refused:
        RequestParser().feed(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + big
        )
    assert refused.value.status == 431


@pytest.mark.parametrize("front", FRONTS)
async def test_a_backend_trailer_never_becomes_a_response_header(front):
    def script(head, i):
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nfirst\r\n0\r\nSet-Cookie: evil=1\r\n\r\n"
        )

    async with ScriptedBackend(script) as backend, Front(front, backend) as address:
        reply = await exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n")
    head = reply.partition(b"\r\n\r\n")[0]
    assert status_of(reply) == 200 and b"first" in reply
    assert b"evil" not in head  # nginx drops it; the balancer relays it as the trailer it is


# -- request framing nginx refuses ----------------------------------------------------------------
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    ("data", "status"),
    [
        # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing; a keep-alive 1.0
        # client could pipeline a request after a body its front framed another way
        (
            b"POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        # a coding the front cannot undo: dechunked and passed on, the backend got gzip
        # bytes with nothing saying so (RFC 9112 §6.1: 501)
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            501,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            501,
        ),
        # CONNECT is not for a reverse proxy or a balancer: the balancer sent it on
        (
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
        ),
        (b"CONNECT /x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        # an absolute-form authority is a Host and follows its rules (RFC 9110 §4.2.4:
        # userinfo is an error; §4.2.1: an empty host is invalid)
        (b"GET http://evil@x/a HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET http:///admin HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
    ids=[
        "te-in-http1.0",
        "gzip-chunked",
        "identity-chunked",
        "connect",
        "connect-path",
        "userinfo",
        "empty-authority",
    ],
)
async def test_framing_and_targets_nginx_refuses_are_refused_before_forwarding(front, data, status):
    async with echo_backend() as backend, Front(front, backend) as address:
        reply = await exchange(address, data)
    assert backend.heads == []
    if data.startswith(b"CONNECT"):
        # deploylab: 405 Method Not Allowed; nginx: 405 for a path, 400 for host:port
        # (its parser refuses the authority form before it looks at the method)
        assert statuses(reply) == ([405] if front != "nginx" or b"/x" in data else [400])
    else:
        assert statuses(reply) == [status]


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    "first",
    [
        b"GET /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"POST /1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /1 HTTP/1.0\r\nHost: x\r\n\r\n",
    ],
    ids=["close", "post-close", "http1.0"],
)
async def test_nothing_pipelined_after_a_closing_request_is_forwarded(front, first):
    """(Holds, as in nginx.) The request that ends a connection is the last one read: what
    follows on it is never forwarded, so it cannot ride on a front's decision about the
    first."""
    async with echo_backend() as backend, Front(front, backend) as address:
        reply = await exchange(address, first + b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(reply) == [200] and reply.endswith(b"/1")
    assert [head.split(b" ")[1] for head in backend.heads] == [b"/1"]


# -- a hostile backend -------------------------------------------------------------------------------
@pytest.mark.parametrize("front", FRONTS)
async def test_an_unasked_101_never_hands_one_clients_tunnel_to_the_next(front):
    """The backend switches protocols on a plain GET, then sends what it means for client 1
    a moment later. The reverse proxy relayed the 101 and pooled the link: the next client
    got those bytes as its answer. nginx relays the 101 and never reuses that link; deploylab
    answers 502 (it never asks to upgrade) and closes the link."""

    def script(head, i):
        if i == 0:
            switch = (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
            )
            return [(0, switch), (0.6, response(b"SECRET-OF-CLIENT-1"))]
        return response(b"second")

    async with ScriptedBackend(script) as backend, Front(front, backend) as address:
        one = await exchange(address, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=0.2)
        await asyncio.sleep(0.1)
        two = await exchange(address, b"GET /2 HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n")
    assert b"SECRET" not in two and statuses(two) == [200] and two.endswith(b"second")
    if front != "nginx":  # (nginx's 101 may still be on its way when client 1 stops reading)
        assert statuses(one) == [502]


@pytest.mark.parametrize("front", FRONTS)
async def test_a_response_head_over_64_kib_is_refused_however_it_arrives(front):
    """The balancer refused a head over 64 KiB only when it came in several reads; one read
    of 70 kB was relayed. nginx (proxy_buffer_size) and the reverse proxy answer 502."""
    head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 70_000 + b"\r\nContent-Length: 5\r\n\r\n"
    backend = ScriptedBackend(lambda h, i: head + b"first")
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, b"GET / HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n")
    assert statuses(reply) == [502] and b"bbbb" not in reply


async def test_a_refused_connect_closes_the_connection_instead_of_holding_it():
    """After ``CONNECT`` the bytes that follow belong to a tunnel, so a CONNECT answered
    without one (405 here) must end the connection; it was kept open, reading nothing,
    until the idle timeout (10 s by default)."""
    async with echo_backend() as backend, ReverseProxy([backend.url]) as proxy:
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\n")
        try:
            reply = await asyncio.wait_for(reader.read(), 5)  # until the proxy closes
        finally:
            writer.close()
    assert statuses(reply) == [405] and backend.heads == []


# -- the forward proxy's shared cache ----------------------------------------------------------------
LOCAL = ["127.0.0.0/8"]


async def through_forward_proxy(proxy, backend, path: bytes = b"/page", extra: bytes = b""):
    return await exchange(
        proxy.address,
        b"GET %s%s HTTP/1.1\r\nHost: x\r\n%s" % (backend.url.encode(), path, extra)
        + CLOSE
        + b"\r\n",
    )


async def test_a_set_cookie_in_a_304_never_reaches_the_next_user():
    """The store path refuses a ``Set-Cookie`` (issue 15), but a revalidation's ``304``
    refreshed the stored headers with whatever it carried: Bob's session cookie, then
    served fresh to Carol."""

    def script(head, i):
        if b"If-None-Match" in head:  # revalidation: the user's own cookie, fresh for 60 s
            return b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nCache-Control: max-age=60\r\n' + (
                b"Set-Cookie: session=%d\r\n\r\n" % i
            )
        return response(b"page", extra=b'Cache-Control: no-cache\r\nETag: "v1"\r\n')

    async with ScriptedBackend(script) as backend, ForwardProxy(allow_destinations=LOCAL) as proxy:
        alice = await through_forward_proxy(proxy, backend)
        bob = await through_forward_proxy(proxy, backend)
        carol = await through_forward_proxy(proxy, backend)
    assert alice.endswith(b"page") and bob.endswith(b"page") and carol.endswith(b"page")
    assert b"session=1" in bob  # his own answer carries his cookie
    assert b"session=" not in carol


@pytest.mark.parametrize("field", [b"Cache-Control: max-age=\xb2", b"Age: \xb2"])
async def test_a_non_ascii_digit_in_a_freshness_field_is_just_invalid(field):
    """``"²".isdigit()`` is True and ``int("²")`` raises: stored with ``max-age=²`` (or
    ``Age: ²``), the entry made every later request for its URL a 500."""
    extra = field + b"\r\n" + (b"" if b"max-age" in field else b"Cache-Control: max-age=60\r\n")

    backend = ScriptedBackend(lambda h, i: response(b"page-%d" % i, extra=extra))
    async with backend, ForwardProxy(allow_destinations=LOCAL) as proxy:
        first = await through_forward_proxy(proxy, backend)
        second = await through_forward_proxy(proxy, backend)
    assert statuses(first) == [200] and statuses(second) == [200]
    # an invalid max-age is no lifetime (fetched again); an invalid Age is ignored (RFC 9111
    # §5.1: a fresh hit)
    assert second.endswith(b"page-1" if b"max-age" in field else b"page-0")


# -- descriptors run out while every connection is busy ---------------------------------------------
SLOW_BACKEND = """
import asyncio
from deploylab.http import HTTPServer, Response

async def slow(request):
    await asyncio.sleep(float(request.target.split("/")[1]))
    return Response(200, [], b"ok")

async def main():
    async with HTTPServer(slow, port={port}):
        await asyncio.Event().wait()

asyncio.run(main())
"""
BALANCER = """
import asyncio
from deploylab.balancer.runtime import Balancer

async def main():
    async with Balancer(["http://127.0.0.1:BACKEND"], port={port}, request_events=False):
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def get_status(port: int, path: bytes) -> int | str:
    """The status a fresh client gets for ``path`` (the exception's name if none in 20 s)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n" % path + CLOSE + b"\r\n")
        try:
            return status_of(await asyncio.wait_for(reader.read(), 20)) or "empty close"
        finally:
            writer.close()
    except (OSError, TimeoutError) as error:
        return type(error).__name__


async def test_balancer_answers_everyone_and_recovers_when_busy_clients_exhaust_descriptors():
    """200 clients at once, each held 2 s by the backend, against a balancer limited to 128
    descriptors: no idle connection to close, sockets for the backend fail (EMFILE) and so
    does ``accept()``. Each client gets an answer (200, or 502 for a backend connection it
    could not open, as nginx does) and the balancer serves normally afterwards. The balancer
    seemed to hang here: its stderr was a pipe nobody read (``ServerProcess`` now writes it
    to a file), full after 64 KiB of asyncio's accept() tracebacks."""
    with (
        ServerProcess(SLOW_BACKEND) as backend,
        ServerProcess(BALANCER.replace("BACKEND", str(backend.port)), nofile=128) as balancer,
    ):
        flood = await asyncio.gather(*(get_status(balancer.port, b"/2/%d" % i) for i in range(200)))
        after = [await get_status(balancer.port, b"/0/after") for _ in range(3)]
        assert "Too many open files" in balancer.log()  # descriptors did run out
    assert set(flood) <= {200, 502} and flood.count(200) >= 20, flood
    assert after == [200, 200, 200]


# -- a body in tiny chunks -------------------------------------------------------------------------
class RawBodyBackend(ScriptedBackend):
    """Keeps each request body as it came on the wire (chunked or not), then answers ok."""

    def __init__(self) -> None:
        super().__init__(lambda head, index: None)
        self.bodies: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            self.heads.append(head)
            if b"chunked" in head.lower():
                body = b""
                while not body.endswith(b"\r\n0\r\n\r\n"):
                    piece = await asyncio.wait_for(reader.read(1 << 20), 30)
                    if not piece:
                        return
                    body += piece
            else:
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await asyncio.wait_for(reader.readexactly(length), 30)
            self.bodies.append(body)
            writer.write(response(b"got"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("front", FRONTS)
async def test_a_body_in_one_byte_chunks_is_forwarded_in_pieces_per_read_not_per_chunk(front):
    """100,000 one-byte chunks (600 kB on the wire): the balancer and the reverse proxy
    passed each chunk on as a chunk of its own, one write (one send() call) and one callback
    each, here and again in the backend: CPU grew with the number of chunks a client chose
    (an 8 MiB body in 1-byte chunks cost the balancer about 35 s of CPU; nginx, which parses
    chunks in C and sends the body with Content-Length, about 0.01 s per 500,000 chunks).
    The pieces one read brings now go on together."""
    chunks = 100_000
    data = (
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + CLOSE
        + b"\r\n"
        + b"1\r\nx\r\n" * chunks
        + b"0\r\n\r\n"
    )
    # (nginx holds the 100 kB body in memory rather than in a temporary file)
    in_memory = NGINX_CONF.replace("client_max_body_size 8m;", "client_body_buffer_size 1m;")
    backend = RawBodyBackend()
    async with backend, Front(front, backend, nginx_conf=in_memory) as address:
        reply = await exchange(address, data, read_timeout=30)
    assert status_of(reply) == 200 and reply.endswith(b"got")
    (body,) = backend.bodies
    pieces = body.count(b"\r\n") // 2  # chunk-size lines: 0 when sent with Content-Length
    assert body.replace(b"\r\n", b"").count(b"x") == chunks
    assert pieces < chunks // 100, f"{pieces} chunks reached the backend"


# -- an HTTP/1.0 client never gets a chunked body ---------------------------------------------
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("keep_alive", [False, True], ids=["close", "keep-alive"])
async def test_an_http_1_0_client_gets_a_chunked_answer_unchunked_and_the_connection_closed(
    front, keep_alive
):
    """RFC 9112 §6.1: chunked framing is not sent to an HTTP/1.0 recipient, which cannot
    read it (``ab`` and other 1.0 clients took the chunk sizes for the body). nginx removes
    the chunking and marks the body's end by closing the connection, even when the client
    asked to keep it alive."""

    def script(head, index):
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
        )

    backend = ScriptedBackend(script)
    request = b"GET /old HTTP/1.0\r\nHost: x\r\n" + (
        b"Connection: keep-alive\r\n" if keep_alive else b""
    )
    async with backend, Front(front, backend) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(request + b"\r\n")
        try:  # to the end of the stream: the front must close it to end the body
            reply = await asyncio.wait_for(reader.read(), 10)
        except TimeoutError:
            pytest.fail(f"{front} kept an HTTP/1.0 connection open after a close-ended body")
        finally:
            writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert status_of(reply) == 200, reply
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"hello world", reply
    assert b"X-Trailer" not in reply


# -- a backend's head whose lines end in a bare LF -------------------------------------------
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize(
    "answer, nginx_status",
    [
        (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", 200),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nhi", 200),
        # nginx 1.22 passes a 100 on as the final answer (see test_hostile_nginx)
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\nhi", 100),
    ],
    ids=["bare-LF", "one-bare-LF", "after-a-100"],
)
async def test_a_response_head_with_bare_lf_line_ends_is_answered_at_once(
    front, answer, nginx_status
):
    """RFC 9112 §2.2 lets a recipient accept a bare LF as a line's end, and nginx does (200);
    deploylab's fronts refuse it, as the shared parser does (502). The balancer looked for
    CRLF CRLF only, so it waited for more of a head that had ended and answered 504 when its
    read timeout ran out (1 s here; 30 s by default), holding the client meanwhile."""
    backend = ScriptedBackend(lambda head, index: answer)
    request = b"GET /lf HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n"
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, request)
    if front == "nginx":
        assert statuses(reply)[0] == nginx_status, reply
    else:
        assert status_of(reply) == 502, reply


# -- a HEAD answer for a resource whose GET is chunked -------------------------------------
@pytest.mark.parametrize("front", FRONTS)
async def test_a_head_answer_never_announces_a_length_the_backend_did_not(front):
    """RFC 9110 §9.3.2: a HEAD answer's fields are those the GET would have had. The backend
    would send the GET chunked, so its length is unknown; the reverse proxy said
    ``Content-Length: 0`` (an empty resource, to a client that sizes a download by HEAD).
    nginx sends no length; the balancer passes ``Transfer-Encoding: chunked`` on."""
    backend = ScriptedBackend(
        lambda head, index: b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: "v1"\r\n\r\n'
    )
    request = b"HEAD /big HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n"
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, request)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert status_of(reply) == 200 and body == b"", reply
    assert b"\r\ncontent-length:" not in head.lower(), head
    assert b'etag: "v1"' in head.lower(), head


# -- the asterisk form ---------------------------------------------------------------------
@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("method", [b"GET", b"POST", b"DELETE"])
async def test_an_asterisk_target_with_any_method_but_options_never_reaches_the_backend(
    front, method
):
    """llhttp takes ``*`` as the target of any method; RFC 9112 §3.2.4 keeps that form for a
    server-wide OPTIONS. ``GET *`` reached the backend through the balancer and the reverse
    proxy (a target no backend expects); nginx answers 400, and so do they now."""
    backend = echo_backend()
    request = method + b" * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n" + CLOSE + b"\r\n"
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, request)
    assert status_of(reply) == 400, reply
    assert backend.heads == []


@pytest.mark.parametrize("front", ["balancer", "reverse-proxy"])
async def test_options_asterisk_is_forwarded_as_rfc_9112_allows(front):
    """The one method the asterisk form is for; nginx refuses it too (400), deploylab
    forwards it: the backend is the server the question is about."""
    backend = echo_backend()
    request = b"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + CLOSE + b"\r\n"
    async with backend, Front(front, backend) as address:
        reply = await exchange(address, request)
    assert status_of(reply) == 200 and reply.endswith(b"*"), reply
    assert backend.heads[0].startswith(b"OPTIONS * HTTP/1.1\r\n")


def test_the_shared_parser_keeps_the_asterisk_form_for_options():
    (options,) = RequestParser().feed(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert options.target == "*"
    with pytest.raises(HTTPError, match="only for OPTIONS"):
        RequestParser().feed(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
