"""The balancer's control API: status, add, drain and remove backends, on its own port.

Kept off the data port, so clients of the site never see backend addresses or change them:
it listens on a loopback address only and every request needs the token
(``Authorization: Bearer TOKEN``), which ``deploylab serve balancer --control PORT`` writes
to a file only its user can read. The endpoints (JSON in, JSON out)::

    GET  /status                                   Balancer.status()
    POST /backends          {"backend": URL, "weight": 1, "backup": false}
    POST /backends/drain    {"backend": URL, "timeout": 30}     waits until drained
    POST /backends/remove   {"backend": URL}

:func:`control_request` is the client the ``deploylab balancer …`` commands use.
"""

from __future__ import annotations

import hmac
import http.client
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from deploylab.http import HTTPServer, Request, Response

if TYPE_CHECKING:
    from deploylab.balancer.runtime import Balancer

__all__ = ["ControlServer", "control_request", "default_token_file", "write_token_file"]


def default_token_file(port: int) -> Path:
    """Where ``deploylab serve balancer --control PORT`` keeps the token by default.

    >>> default_token_file(9000).name
    'balancer-control-9000.token'
    """
    base = os.environ.get("XDG_RUNTIME_DIR") or Path.home() / ".deploylab"
    return Path(base) / f"balancer-control-{port}.token"


def write_token_file(path: Path, token: str) -> Path:
    """Write ``token`` to ``path``, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return path


class ControlServer(HTTPServer):
    """Serve the control API of ``balancer`` on ``host:port`` (a loopback address only)."""

    def __init__(
        self, balancer: Balancer, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"control address {host!r}: expected a loopback address")
        super().__init__(self.handle, host, port, name="balancer-control")
        self.balancer = balancer
        self.token = token or secrets.token_urlsafe(24)

    def _authorized(self, request: Request) -> bool:
        given = (request.header("Authorization") or "").encode("latin-1")
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    async def handle(self, request: Request) -> Response:
        if not self._authorized(request):
            return Response.json(
                {"error": "missing or wrong token"}, 401, [("WWW-Authenticate", "Bearer")]
            )
        route = (request.method, request.target.split("?", 1)[0])
        if route == ("GET", "/status"):
            return Response.json(self.balancer.status())
        if route[1] not in ("/backends", "/backends/drain", "/backends/remove"):
            return Response.json({"error": f"no such endpoint {route[1]!r}"}, 404)
        if request.method != "POST":
            return Response.json({"error": "use POST"}, 405, [("Allow", "POST")])
        try:
            command = json.loads(request.body or b"{}")
            backend = command["backend"]
            if route[1] == "/backends":
                peer = self.balancer.add_backend(
                    backend,
                    weight=int(command.get("weight", 1)),
                    backup=bool(command.get("backup", False)),
                )
                return Response.json({"added": peer.name}, 201)
            if route[1] == "/backends/drain":
                await self.balancer.drain_backend(backend, float(command.get("timeout", 30)))
                return Response.json({"drained": backend})
            peer = self.balancer.remove_backend(backend)
            return Response.json({"removed": peer.name})
        except TimeoutError:
            return Response.json({"error": f"{backend} did not drain in time"}, 504)
        except (KeyError, TypeError, ValueError) as error:
            return Response.json({"error": str(error)}, 400)


def control_request(
    port: int,
    token: str,
    method: str = "GET",
    path: str = "/status",
    body: dict | None = None,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
) -> tuple[int, dict]:
    """Send one control request; return ``(status, JSON answer)``."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        reply = connection.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        connection.close()
