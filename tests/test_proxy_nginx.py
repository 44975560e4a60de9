"""A real nginx running `deploylab nginx-conf reverse-proxy` tells the backend the same things
as deploylab's reverse proxy does."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from conftest import free_port, require_tool

from deploylab.nginx import NginxProcess
from deploylab.proxy import OriginServer, ReverseProxy, reverse_proxy_config

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(60)]


def test_nginx_config_is_accepted_by_nginx(tmp_path):
    nginx = require_tool("nginx", "nginx")
    config = tmp_path / "nginx.conf"
    config.write_text(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "deploylab.cli",
                "nginx-conf",
                "reverse-proxy",
                "--listen",
                str(free_port()),
                "--backend",
                "http://127.0.0.1:9",
                "--runtime-dir",
                str(tmp_path),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_backend_sees_the_same_client_headers_from_nginx_and_deploylab(tmp_path):
    require_tool("nginx", "nginx")

    async def scenario(nginx):
        async with OriginServer(name="backend") as backend, ReverseProxy([backend.url]) as ours:
            nginx.start(reverse_proxy_config(nginx.port, [backend.url], runtime_dir=nginx.prefix))
            seen = {}
            for label, port in (("nginx", nginx.port), ("deploylab", ours.port)):
                transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
                async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                    reply = await client.get(
                        f"http://127.0.0.1:{port}/check",
                        headers={"Host": "shop.example:8443", "X-Forwarded-For": "198.51.100.7"},
                    )
                assert reply.status_code == 200, (label, reply.text)
                headers = {k.lower(): v for k, v in reply.json()["headers"].items()}
                seen[label] = {
                    name: headers.get(name) for name in ("x-real-ip", "x-forwarded-for", "host")
                }
            return seen

    with NginxProcess(prefix=tmp_path) as nginx:
        seen = asyncio.run(scenario(nginx))
    assert seen["nginx"] == seen["deploylab"], seen
    assert seen["nginx"]["x-real-ip"] == "127.0.0.2"
    assert seen["nginx"]["x-forwarded-for"] == "198.51.100.7, 127.0.0.2"
    assert seen["nginx"]["host"] == "shop.example:8443"
