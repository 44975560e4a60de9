"""``deploylab serve backend|balancer``, ``deploylab balancer add|drain|remove|status``,
``deploylab nginx-conf balancer``, ``deploylab bench lb``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from deploylab.balancer.core import ALGORITHMS, check_algorithm


def register(commands) -> None:
    p = commands.add(
        "backend",
        "demo app instance that names itself and can burn CPU",
        _serve_backend,
        group="serve",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default=None, help="name shown in responses (default backend-PORT)")
    p.add_argument("--work-ms", type=float, default=0.0, help="CPU milliseconds burnt per request")

    p = commands.add(
        "balancer",
        "L7 (HTTP) or L4 (TCP) load balancer with nginx's algorithms",
        _serve_balancer,
        group="serve",
    )
    _balancer_arguments(p)
    p.add_argument("--config", default=None, help="TOML file (see deploylab.balancer.config)")
    p.add_argument(
        "--request-events",
        action="store_true",
        help="publish one event per request (costs speed; metrics are always published)",
    )
    p.add_argument(
        "--control",
        type=int,
        default=None,
        metavar="PORT",
        help="serve the control API (status, add, drain, remove) on 127.0.0.1:PORT",
    )
    p.add_argument(
        "--control-token-file",
        default=None,
        metavar="FILE",
        help="where to write the control token, mode 0600 "
        "(default $XDG_RUNTIME_DIR or ~/.deploylab/balancer-control-PORT.token)",
    )

    control = commands.add_group(
        "balancer", "control a running balancer (deploylab serve balancer --control PORT)"
    )
    for action, text in (
        ("status", "per-backend state, requests, failures and latency"),
        ("add", "add a backend (new requests may go to it at once)"),
        ("drain", "send a backend no new requests and wait until it is idle"),
        ("remove", "remove a backend (requests on it finish)"),
    ):
        c = control(action, text, _control)
        if action != "status":
            c.add_argument("backend", metavar="URL", help="backend such as http://127.0.0.1:8081")
        if action == "add":
            c.add_argument("--weight", type=int, default=1)
            c.add_argument("--backup", action="store_true")
        if action == "drain":
            c.add_argument("--timeout", type=float, default=30.0, help="seconds to wait")
        c.add_argument("--control", type=int, required=True, metavar="PORT")
        c.add_argument(
            "--token-file",
            default=None,
            metavar="FILE",
            help="the token file (default: the one serve wrote for PORT; "
            "or set DEPLOYLAB_CONTROL_TOKEN)",
        )
        c.set_defaults(control_action=action)

    p = commands.add(
        "balancer",
        "nginx upstream config equivalent to a deploylab balancer",
        _nginx_conf,
        group="nginx-conf",
    )
    _balancer_arguments(p)
    p.add_argument("--keepalive", type=int, default=0, help="upstream keepalive connections")

    p = commands.add(
        "lb",
        "deploylab's balancer vs nginx over the same backends, with wrk",
        _bench_lb,
        group="bench",
    )
    p.add_argument("--backends", type=int, default=2)
    p.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    p.add_argument(
        "--rounds", type=int, default=5, help="alternations nginx/deploylab (the spread is printed)"
    )
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layer", type=int, choices=(4, 7), default=7)


def _algorithm(text: str) -> str:
    """``--algorithm`` through the core's registry (``least-conn`` means ``least_conn``)."""
    try:
        return check_algorithm(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _balancer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--algorithm",
        default="round_robin",
        type=_algorithm,
        choices=ALGORITHMS,
        help="how to choose a backend (nginx's names): %(choices)s",
    )
    p.add_argument("--key", default="$request_uri", help="hash key (hash algorithms)")
    p.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="URL[,weight=W][,backup]",
        help="a backend; options: weight=, max_fails=, fail_timeout=, max_conns=, "
        "slow_start=, backup, down (repeat the option for more backends)",
    )
    p.add_argument("--layer", type=int, choices=(4, 7), default=7)


def _serve_backend(args: argparse.Namespace) -> int:
    from deploylab.balancer.backend import DemoBackend
    from deploylab.loopback import serve_until_signal

    def ready(backend: DemoBackend) -> None:
        print(f"backend {backend.name} listening on {backend.url}", flush=True)

    serve_until_signal(DemoBackend(args.port, args.host, args.name, args.work_ms), ready)
    return 0


def _serve_balancer(args: argparse.Namespace) -> int:
    from deploylab.balancer.control import default_token_file, write_token_file
    from deploylab.balancer.runtime import Balancer
    from deploylab.loopback import serve_until_signal

    if args.config:
        balancer = Balancer.from_toml(args.config)
    else:
        if not args.backend:
            raise ValueError(
                "no --backend given: expected at least one URL like http://127.0.0.1:8081"
            )
        balancer = Balancer(
            args.backend,
            algorithm=args.algorithm,
            port=args.port,
            host=args.host,
            layer=args.layer,
            key=args.key,
            request_events=args.request_events,
        )
    if args.control is not None:
        balancer.control_port = args.control

    def ready(balancer: Balancer) -> None:
        print(
            f"balancer (L{balancer.layer}, {balancer.upstream.algorithm}) listening on "
            f"{balancer.url} -> {', '.join(balancer.backends)}",
            flush=True,
        )
        if balancer.control is not None:
            port = balancer.control.port
            token_file = Path(args.control_token_file or default_token_file(port))
            write_token_file(token_file, balancer.control.token)
            print(f"control API on {balancer.control.url} (token in {token_file})", flush=True)

    serve_until_signal(balancer, ready)
    return 0


def _nginx_conf(args: argparse.Namespace) -> int:
    from deploylab.balancer.nginx import nginx_config

    if not args.backend:
        raise ValueError("no --backend given: expected at least one URL like http://127.0.0.1:8081")
    print(
        nginx_config(
            args.backend,
            algorithm=args.algorithm,
            port=args.port or 80,
            key=args.key,
            keepalive=args.keepalive,
            layer=args.layer,
        ),
        end="",
    )
    return 0


def _bench_lb(args: argparse.Namespace) -> int:
    from deploylab.balancer.bench import bench_lb

    bench_lb(
        backends=args.backends,
        duration=args.duration,
        rounds=args.rounds,
        connections=args.connections,
        threads=args.threads,
        layer=args.layer,
    )
    return 0


def _control(args: argparse.Namespace) -> int:
    from deploylab.balancer.control import control_request, default_token_file

    token = os.environ.get("DEPLOYLAB_CONTROL_TOKEN")
    if args.token_file or not token:
        path = Path(args.token_file or default_token_file(args.control))
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            raise ValueError(
                f"no control token: {path} does not exist (start the balancer with "
                f"--control {args.control}, or set DEPLOYLAB_CONTROL_TOKEN)"
            ) from None
    action = args.control_action
    if action == "status":
        status, answer = control_request(args.control, token)
    else:
        body: dict = {"backend": args.backend}
        if action == "add":
            body.update(weight=args.weight, backup=args.backup)
        if action == "drain":
            body["timeout"] = args.timeout
        target = "/backends" if action == "add" else f"/backends/{action}"
        status, answer = control_request(
            args.control, token, "POST", target, body, timeout=getattr(args, "timeout", 30) + 5
        )
    print(json.dumps(answer, indent=2))
    return 0 if status < 400 else 1
