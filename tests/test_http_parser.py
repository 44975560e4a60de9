"""RequestParser against h11 (an independent, strict sans-IO parser) on generated requests,
fed in arbitrary chunks: both must see the same method, target, headers and body."""

from __future__ import annotations

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from deploylab.http import Limits, RequestParser, ResponseParser

token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=12,
)
value = st.text(alphabet='abcdefghijklmnopqrstuvwxyz0123456789 ,;=/.:-_"', max_size=30).map(
    str.strip
)
path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/._-~?=&%", max_size=40).map(
    lambda p: "/" + p
)
FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    target = draw(path)
    headers = [("Host", "example.test")]
    headers += [
        (n, v)
        for n, v in draw(st.lists(st.tuples(token, value), max_size=6))
        if n.lower() not in FRAMING
    ]
    body = draw(st.binary(max_size=300)) if method in ("POST", "PUT", "PATCH") else b""
    chunked = bool(body) and draw(st.booleans())
    raw = f"{method} {target} HTTP/1.1\r\n".encode()
    raw += b"".join(f"{n}: {v}\r\n".encode() for n, v in headers)
    if chunked:
        raw += b"Transfer-Encoding: chunked\r\n\r\n"
        pieces = draw(st.lists(st.integers(1, 50), max_size=5))
        offset = 0
        for size in [*pieces, len(body)]:
            piece = body[offset : offset + size]
            if piece:
                raw += b"%x\r\n" % len(piece) + piece + b"\r\n"
            offset += len(piece)
        raw += b"0\r\n\r\n"
    elif body or method in ("POST", "PUT", "PATCH"):
        raw += b"Content-Length: %d\r\n\r\n" % len(body) + body
    else:
        raw += b"\r\n"
    return raw


def h11_parse(raw: bytes):
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(raw)
    request = connection.next_event()
    body = b""
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            break
    headers = [(n.decode(), v.decode()) for n, v in request.headers.raw_items()]
    return request.method.decode(), request.target.decode(), headers, body


@settings(max_examples=200, deadline=None)
@given(
    batch=st.lists(requests(), min_size=1, max_size=3),
    cut=st.lists(st.integers(1, 64), max_size=20),
)
def test_same_messages_as_h11_whatever_the_chunking(batch, cut):
    data = b"".join(batch)
    parser = RequestParser(Limits())
    parsed, offset = [], 0
    for size in [*cut, len(data)]:  # feed in arbitrary pieces, as TCP may deliver them
        parsed += parser.feed(data[offset : offset + size])
        offset += size
    assert len(parsed) == len(batch)
    for raw, ours in zip(batch, parsed, strict=True):
        method, target, headers, body = h11_parse(raw)
        assert (ours.method, ours.target, ours.body) == (method, target, body)
        assert [(n.lower(), v) for n, v in ours.headers] == [(n.lower(), v) for n, v in headers]


@given(st.binary(min_size=1, max_size=64))
def test_response_bodies_survive_any_chunking(body):
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body)
        + body
        + b"\r\n0\r\n\r\n"
    )
    parser = ResponseParser()
    responses = []
    for index in range(len(raw)):
        responses += parser.feed(raw[index : index + 1])
    assert [r.body for r in responses] == [body]
