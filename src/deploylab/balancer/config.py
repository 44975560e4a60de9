"""Balancer configuration: backend specs and the TOML file, parsed in one place.

:func:`parse_backend` is the one reader of a backend spec in deploylab: the balancer, its
nginx writer and the reverse proxy (through :func:`backend_address`) all use it, so a
backend means the same thing everywhere. Nothing here does I/O beyond reading a file.

TOML config for ``deploylab serve balancer --config FILE``::

    port = 8080
    algorithm = "least_conn"     # any of deploylab.balancer.ALGORITHMS
    layer = 7
    [[backend]]
    url = "http://127.0.0.1:8081"
    weight = 2
    [[backend]]
    url = "http://127.0.0.1:8082"
    backup = true
"""

from __future__ import annotations

from typing import Any

from deploylab.balancer.core import Peer, RetryPolicy

__all__ = ["BACKEND_OPTIONS", "backend_address", "load_toml", "parse_backend"]

#: The options a backend spec may carry, with their types (nginx's ``server`` parameters).
BACKEND_OPTIONS: dict[str, type] = {
    "weight": int,
    "max_fails": int,
    "fail_timeout": float,
    "max_conns": int,
    "slow_start": float,
    "backup": bool,
    "down": bool,
}


def _split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    url, *rest = spec.split(",")
    options: dict[str, Any] = {}
    for item in rest:
        name, sep, value = item.strip().partition("=")
        if not sep:
            if name not in ("backup", "down"):
                raise ValueError(
                    f"backend option {item!r} in {spec!r}: expected NAME=VALUE, backup or down"
                )
            options[name] = True
        else:
            options[name] = value
    return url, options


def parse_backend(spec: str | dict[str, Any] | Peer, *, require_url: bool = False) -> Peer:
    """``http://HOST:PORT[,weight=W][,max_fails=N][,fail_timeout=S][,max_conns=N]
    [,slow_start=S][,backup][,down]`` (or a TOML table / a Peer) → :class:`Peer` named
    ``HOST:PORT`` (nginx's server string).

    ``require_url``: accept only a plain ``http://HOST:PORT`` URL (no bare ``HOST:PORT``, no
    options, no path), what a reverse proxy's ``--backend`` takes.

    >>> parse_backend("http://127.0.0.1:8081,weight=5,backup")
    Peer(name='127.0.0.1:8081', weight=5, max_fails=1, fail_timeout=10.0, backup=True, down=False, max_conns=0, slow_start=0.0, current_weight=0, effective_weight=5, conns=0, fails=0, accessed=0.0, checked=0.0, draining=False, healthy=True, recovered_at=None)
    >>> parse_backend("127.0.0.1:8081", require_url=True)
    Traceback (most recent call last):
    ...
    ValueError: backend '127.0.0.1:8081' is not an http://HOST:PORT URL
    """
    if isinstance(spec, Peer):
        return spec
    if isinstance(spec, dict):
        options = dict(spec)
        url = options.pop("url")
    elif require_url:
        url, options = spec, {}
    else:
        url, options = _split_spec(spec)
    address = url.strip()
    if require_url and (not address.startswith("http://") or "," in address):
        raise ValueError(f"backend {url!r} is not an http://HOST:PORT URL")
    if "://" in address:
        scheme, _, address = address.partition("://")
        if scheme not in ("http", "tcp"):
            raise ValueError(f"backend {url!r}: expected an http:// URL")
    address = address.rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host or "/" in host or not 0 < int(port) < 65536:
        if require_url:
            raise ValueError(f"backend {url!r} is not an http://HOST:PORT URL")
        raise ValueError(f"backend {url!r}: expected HOST:PORT such as http://127.0.0.1:8081")
    host = {"localhost": "127.0.0.1"}.get(host, host)
    kwargs: dict[str, Any] = {}
    for name, value in options.items():
        if name not in BACKEND_OPTIONS:
            raise ValueError(
                f"backend option {name!r}: expected one of {', '.join(BACKEND_OPTIONS)}"
            )
        kind = BACKEND_OPTIONS[name]
        try:
            kwargs[name] = value if isinstance(value, bool) else kind(value)
        except ValueError:
            raise ValueError(f"backend option {name}={value!r}: expected {kind.__name__}") from None
    return Peer(f"{host}:{port}", **kwargs)


def backend_address(url: str) -> tuple[str, int]:
    """``(host, port)`` to connect to for a plain ``http://HOST:PORT`` backend URL.

    >>> backend_address("http://127.0.0.1:8081"), backend_address("http://[::1]:8082/")
    (('127.0.0.1', 8081), ('::1', 8082))
    >>> backend_address("127.0.0.1:8081")
    Traceback (most recent call last):
    ...
    ValueError: backend '127.0.0.1:8081' is not an http://HOST:PORT URL
    """
    host, _, port = parse_backend(url, require_url=True).name.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def load_toml(path: str) -> dict[str, Any]:
    """The keyword arguments of :class:`~deploylab.balancer.runtime.Balancer` from a TOML
    file (format in the module docstring): ``backends`` first, then the rest as written."""
    import tomllib

    with open(path, "rb") as handle:
        config = tomllib.load(handle)
    backends = config.pop("backend", [])
    retry = config.pop("proxy_next_upstream", None)
    if retry is not None:
        config["retry"] = RetryPolicy(retry)
    return {"backends": backends, **config}
