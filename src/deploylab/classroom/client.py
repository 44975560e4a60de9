"""A person's side of the hub, over HTTP: log in with the login form (as a browser does),
start their server, call their server's REST API. Used by the benchmark and the tests.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["HubSession", "LoginError"]


class LoginError(RuntimeError):
    """The hub refused a login or a server did not start; the message says which user."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class HubSession:
    """One person's cookies on the hub at ``url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, url: str, username: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.cookies = http.cookiejar.CookieJar()
        self.token = ""
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def _xsrf(self) -> str:
        for cookie in self.cookies:
            if cookie.name == "_xsrf" and cookie.value is not None:
                return cookie.value
        return ""

    def request(
        self, path: str, method: str = "GET", body=None, form=None, headers=None, timeout=60
    ):
        """``(status, headers, bytes)`` of a request with this person's cookies; redirects are
        returned, not followed."""
        data = None
        all_headers = {"X-XSRFToken": self._xsrf(), **(headers or {})}
        if self.token and path.startswith("/user/"):
            all_headers.setdefault("Authorization", f"token {self.token}")
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=all_headers
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def login(self, password: str) -> None:
        """Log in through the hub's form (the first login sets the password)."""
        self.request("/hub/login")
        status, headers, _ = self.request(
            "/hub/login",
            method="POST",
            form={"username": self.username, "password": password, "_xsrf": self._xsrf()},
        )
        if status != 302 or "/hub/login" in (headers.get("Location") or ""):
            raise LoginError(f"login of {self.username!r} refused (HTTP {status})")
        # Servers accept the hub's cookie only after an OAuth round trip; an API token of the
        # person's own (made with their cookie) reaches their server directly.
        status, _, text = self.request(
            f"/hub/api/users/{self.username}/tokens", method="POST", body={"note": "deploylab"}
        )
        if status != 201:
            raise LoginError(f"token for {self.username!r}: HTTP {status} {text[:200]!r}")
        self.token = json.loads(text)["token"]

    def start_server(self, timeout: float = 120) -> float:
        """Start this person's server and wait until it answers; returns the seconds taken."""
        started = time.monotonic()
        status, _, text = self.request(f"/hub/api/users/{self.username}/server", method="POST")
        if status not in (201, 202, 400):  # 400: already running
            raise LoginError(f"starting {self.username}'s server: HTTP {status} {text[:200]!r}")
        while time.monotonic() - started < timeout:
            status, _, _ = self.request(f"/user/{self.username}/api/status")
            if status == 200:
                return time.monotonic() - started
            time.sleep(0.25)
        raise LoginError(f"{self.username}'s server did not answer within {timeout:.0f} s")

    def api(self, path: str, method: str = "GET", body=None, timeout=60):
        """JSON from this person's own server (``/user/NAME/api/...``)."""
        status, _, text = self.request(
            f"/user/{self.username}/api{path}", method=method, body=body, timeout=timeout
        )
        if status >= 400:
            raise LoginError(f"{method} /user/{self.username}/api{path}: HTTP {status}")
        return json.loads(text) if text else None


def run_cells(
    session: HubSession, cells: list[str], timeout: float = 300, folder: str = "lessons"
) -> list[str]:
    """Run ``cells`` one after another in a new kernel of the person's own server (over the
    kernel websocket, as JupyterLab does); returns the errors raised (empty: all ran).

    The kernel runs in ``folder`` of the person's workspace, as JupyterLab runs a lesson's
    kernel in the lesson's own folder (lessons open their own file and ``../assets``)."""
    import asyncio

    status, _, text = session.request(
        f"/user/{session.username}/api/kernels",
        method="POST",
        body={"name": "python3", "path": folder},
    )
    if status != 201:
        raise LoginError(f"{session.username}: no kernel (HTTP {status} {text[:200]!r})")
    kernel_id = json.loads(text)["id"]
    try:
        return asyncio.run(asyncio.wait_for(_run_cells(session, kernel_id, cells), timeout))
    except TimeoutError:
        return [f"timed out after {timeout:.0f} s"]
    finally:
        session.request(f"/user/{session.username}/api/kernels/{kernel_id}", method="DELETE")


async def _run_cells(session: HubSession, kernel_id: str, cells: list[str]) -> list[str]:
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session_id = uuid.uuid4().hex
    url = session.url.replace("http://", "ws://", 1)
    request = HTTPRequest(
        f"{url}/user/{session.username}/api/kernels/{kernel_id}/channels?session_id={session_id}",
        headers={"Authorization": f"token {session.token}"},
        # The server answers the handshake once the new kernel is up; on a loaded machine that
        # takes longer than tornado's 20 s default. ``run_cells``' own timeout bounds the whole.
        connect_timeout=60,
        request_timeout=600,
    )
    connection = await websocket_connect(request, max_message_size=64 << 20)
    errors: list[str] = []
    try:
        for code in cells:
            message_id = uuid.uuid4().hex
            message = {
                "header": {
                    "msg_id": message_id,
                    "msg_type": "execute_request",
                    "username": session.username,
                    "session": session_id,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
                "channel": "shell",
                "buffers": [],
            }
            await connection.write_message(json.dumps(message))
            while True:
                raw = await connection.read_message()
                if raw is None:
                    raise LoginError(f"{session.username}: the kernel connection closed")
                if isinstance(raw, bytes):
                    continue  # binary widget buffers
                reply = json.loads(raw)
                if reply.get("parent_header", {}).get("msg_id") != message_id:
                    continue
                if reply["msg_type"] == "error":
                    content = reply["content"]
                    errors.append(f"{content.get('ename')}: {content.get('evalue')}")
                if reply["msg_type"] == "execute_reply":
                    break
            if errors:
                break
    finally:
        connection.close()
    return errors
