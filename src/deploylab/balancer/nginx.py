"""nginx configuration equivalent to a deploylab balancer.

:func:`nginx_config` prints the ``upstream``/``server`` blocks (what ``deploylab nginx-conf
balancer`` shows); :class:`deploylab.nginx.NginxProcess` runs them in a real nginx for the
parity tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Iterable

from deploylab.balancer.config import parse_backend
from deploylab.balancer.core import ALGORITHM_RULES, Peer, check_algorithm

__all__ = ["nginx_config", "server_line", "upstream_block"]


def server_line(peer: Peer) -> str:
    """nginx's ``server`` directive for one peer, defaults left out.

    >>> server_line(Peer("127.0.0.1:8081", weight=5, max_fails=3, backup=True))
    'server 127.0.0.1:8081 weight=5 max_fails=3 backup;'
    """
    parts = [f"server {peer.name}"]
    if peer.weight != 1:
        parts.append(f"weight={peer.weight}")
    if peer.max_fails != 1:
        parts.append(f"max_fails={peer.max_fails}")
    if peer.fail_timeout != 10:
        parts.append(f"fail_timeout={peer.fail_timeout:g}s")
    if peer.max_conns:
        parts.append(f"max_conns={peer.max_conns}")
    if peer.backup:
        parts.append("backup")
    if peer.down:
        parts.append("down")
    return " ".join(parts) + ";"


def upstream_block(
    backends: Iterable[str | dict | Peer],
    algorithm: str = "round_robin",
    key: str = "$request_uri",
    keepalive: int = 0,
    name: str = "backend",
    indent: str = "    ",
) -> str:
    """An ``upstream NAME { ... }`` block.

    >>> print(upstream_block(["http://localhost:8080", "http://localhost:8081"]))
    upstream backend {
        server 127.0.0.1:8080;
        server 127.0.0.1:8081;
    }
    """
    directive = ALGORITHM_RULES[check_algorithm(algorithm)].directive
    lines = [f"upstream {name} {{"]
    if directive:
        lines.append(indent + directive.format(key=key))
    lines += [indent + server_line(parse_backend(b)) for b in backends]
    if keepalive:
        lines.append(f"{indent}keepalive {keepalive};")
    lines.append("}")
    return "\n".join(lines)


def nginx_config(
    backends: Iterable[str | dict | Peer],
    algorithm: str = "round_robin",
    port: int = 80,
    key: str = "$request_uri",
    keepalive: int = 0,
    layer: int = 7,
    host: str = "127.0.0.1",
    retry: Iterable[str] | None = None,
) -> str:
    """The ``http { upstream ...; server ... }`` (or ``stream { ... }`` for layer 4) config
    equivalent to ``deploylab serve balancer`` with the same arguments.

    >>> print(nginx_config(["localhost:8080", "localhost:8081"], port=8000))  # the seed's
    http {
        upstream backend {
            server 127.0.0.1:8080;
            server 127.0.0.1:8081;
        }
        server {
            listen 127.0.0.1:8000;
            location / {
                proxy_pass http://backend;
                proxy_set_header Host $http_host;
                proxy_set_header X-Real-IP $remote_addr;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            }
        }
    }
    <BLANKLINE>
    """
    backends = list(backends)
    upstream = upstream_block(
        backends, algorithm, key, keepalive if layer == 7 else 0, indent="    "
    ).replace("\n", "\n    ")
    if layer == 4:
        if algorithm.replace("-", "_") == "ip_hash":
            raise ValueError(
                "algorithm 'ip_hash' does not exist in nginx's stream (layer 4) module: "
                "expected hash with --key '$remote_addr'"
            )
        return (
            f"stream {{\n    {upstream}\n    server {{\n        listen {host}:{port};\n"
            f"        proxy_pass backend;\n    }}\n}}\n"
        )
    location = [
        "proxy_pass http://backend;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    ]
    if keepalive:
        location += ["proxy_http_version 1.1;", 'proxy_set_header Connection "";']
    if retry is not None:
        location.append(f"proxy_next_upstream {' '.join(retry)};")
    body = "\n            ".join(location)
    return (
        f"http {{\n    {upstream}\n    server {{\n        listen {host}:{port};\n"
        f"        location / {{\n            {body}\n        }}\n    }}\n}}\n"
    )
