"""``deploylab serve origin|forward-proxy|reverse-proxy``, ``deploylab nginx-conf
reverse-proxy`` and ``deploylab bench proxy``."""

from __future__ import annotations

import argparse


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number from 0 to 65535")
    return int(text)


def _events(name: str):
    """A served process has no subscriber and nobody reads its recent events: a bus that
    keeps none, so the servers build no event per request (``EventBus.active``)."""
    from deploylab.events import EventBus

    return EventBus(name, keep=0)


def _run(server, access_log: bool = True) -> int:
    import logging
    import sys

    from deploylab.loopback import serve_until_signal

    # the access log is one INFO line per request; off, as nginx's ``access_log off``
    level = logging.INFO if access_log else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)

    def ready(running) -> None:
        print(f"{running.name} listening on {running.url}", flush=True)

    serve_until_signal(server, ready)
    return 0


def _serve_origin(args: argparse.Namespace) -> int:
    from deploylab.proxy.origin import OriginServer

    return _run(
        OriginServer(
            args.host,
            args.port,
            name=args.name,
            allow_from=args.allow_from,
            events=_events("origin"),
        ),
        not args.no_access_log,
    )


def _serve_forward(args: argparse.Namespace) -> int:
    from deploylab.proxy.forward import ForwardProxy

    return _run(
        ForwardProxy(
            args.host,
            args.port,
            source_address=args.source_address,
            cache_size=args.cache_size,
            allow_clients=args.allow_clients or ("127.0.0.0/8", "::1/128"),
            connect_ports=args.connect_ports or (443,),
            allow_destinations=args.allow_destination,
            add_forwarded_for=args.add_forwarded_for,
            events=_events("forward-proxy"),
        ),
        not args.no_access_log,
    )


def _serve_reverse(args: argparse.Namespace) -> int:
    from deploylab.proxy.reverse import ReverseProxy

    return _run(
        ReverseProxy(args.backend, args.host, args.port, events=_events("reverse-proxy")),
        not args.no_access_log,
    )


def _nginx_reverse(args: argparse.Namespace) -> int:
    from deploylab.proxy.nginx import reverse_proxy_config

    print(reverse_proxy_config(args.listen, args.backend, runtime_dir=args.runtime_dir), end="")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from deploylab.proxy.bench import run_bench

    return run_bench(
        requests=args.requests,
        concurrency=args.concurrency,
        use_wrk=not args.no_wrk,
        seconds=args.seconds,
        rounds=args.rounds,
    )


def _access_log_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="print no line per request (as nginx's access_log off; for benchmarks)",
    )


def register(commands) -> None:
    """Add the proxy commands to ``deploylab``."""
    p = commands.add(
        "origin", "demo origin server (JSON echo, caching endpoints)", _serve_origin, group="serve"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=8080, help="port (0 = any free port; default 8080)"
    )
    p.add_argument("--name", default="origin", help="name shown in its answers")
    p.add_argument(
        "--allow-from",
        action="append",
        default=[],
        metavar="CIDR",
        help="serve only clients in CIDR (repeatable): a region-restricted service",
    )
    _access_log_option(p)

    p = commands.add(
        "forward-proxy", "caching forward proxy for allowed clients", _serve_forward, group="serve"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=3128, help="port (0 = any free port; default 3128)"
    )
    p.add_argument(
        "--source-address", metavar="ADDR", help="connect to origins from this local address"
    )
    p.add_argument(
        "--cache-size", type=int, default=256, metavar="N", help="cached URIs kept (default 256)"
    )
    p.add_argument(
        "--allow-clients",
        action="append",
        metavar="CIDR",
        help="client networks allowed to use the proxy (repeatable; default loopback)",
    )
    p.add_argument(
        "--connect-ports",
        type=_port,
        nargs="+",
        metavar="PORT",
        help="ports CONNECT may reach (default 443)",
    )
    p.add_argument(
        "--allow-destination",
        action="append",
        default=[],
        metavar="CIDR",
        help="loopback/private/link-local networks the proxy may still connect to (repeatable; "
        "by default it connects only to public addresses)",
    )
    p.add_argument(
        "--add-forwarded-for",
        action="store_true",
        help="tell origins the client address in X-Forwarded-For (default: hide it)",
    )
    _access_log_option(p)

    p = commands.add(
        "reverse-proxy",
        "reverse proxy in front of backends (round robin)",
        _serve_reverse,
        group="serve",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port, default=8000, help="port (0 = any free port; default 8000)"
    )
    p.add_argument(
        "--backend",
        action="append",
        required=True,
        metavar="URL",
        help="backend http://HOST:PORT (repeatable)",
    )
    _access_log_option(p)

    p = commands.add(
        "reverse-proxy",
        "nginx.conf for a reverse proxy like the seed's",
        _nginx_reverse,
        group="nginx-conf",
    )
    p.add_argument("--listen", required=True, help="PORT or ADDRESS:PORT nginx listens on")
    p.add_argument(
        "--backend",
        action="append",
        required=True,
        metavar="URL",
        help="backend http://HOST:PORT (repeatable)",
    )
    p.add_argument(
        "--runtime-dir",
        metavar="DIR",
        help="put pid, logs and temp files in DIR and add 'daemon off' (to run with nginx -p DIR -c FILE)",
    )

    p = commands.add(
        "proxy", "requests/s and latency through the proxies vs direct", _bench, group="bench"
    )
    p.add_argument(
        "--requests", type=int, default=2000, help="requests per measurement (default 2000)"
    )
    p.add_argument(
        "--concurrency", type=int, default=16, help="concurrent connections (default 16)"
    )
    p.add_argument(
        "--no-wrk",
        action="store_true",
        help="use the built-in Python load generator even if wrk is present",
    )
    p.add_argument(
        "--seconds", type=float, default=3.0, help="seconds per wrk measurement (default 3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="times each case is measured, in turn; the spread is printed (default 5)",
    )
