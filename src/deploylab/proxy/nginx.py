"""The nginx configuration equivalent to deploylab's reverse proxy (the seed's set-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deploylab.balancer.config import backend_address


def reverse_proxy_config(
    listen: int | str, backends: Sequence[str], *, runtime_dir: str | Path | None = None
) -> str:
    """A complete ``nginx.conf`` that proxies ``listen`` to ``backends`` like the seed does:
    ``proxy_pass`` plus ``X-Real-IP``, ``X-Forwarded-For`` and ``Host`` headers.

    ``listen``: a port (bound on 127.0.0.1) or ``ADDRESS:PORT``. ``runtime_dir``: where the
    pid file, logs and temp files go, so an unprivileged nginx can run it with ``-p DIR``.

    >>> print(reverse_proxy_config(8000, ["http://127.0.0.1:8080"]).split("server {")[1].strip())
    listen 127.0.0.1:8000;
            location / {
                proxy_pass http://backend;
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_set_header X-Real-IP $remote_addr;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header Host $http_host;
            }
        }
    }
    """
    listen_text = str(listen)
    if listen_text.isdigit():
        listen_text = f"127.0.0.1:{listen_text}"
    elif not listen_text.rpartition(":")[2].isdigit():
        raise ValueError(f"--listen {listen!r} is not a PORT or ADDRESS:PORT")
    servers = "\n".join(
        f"        server {host}:{port};"
        for host, port in (backend_address(url) for url in backends)
    )
    if not servers:
        raise ValueError("nginx-conf reverse-proxy needs at least one --backend URL")
    runtime = ""
    main = ""
    if runtime_dir is not None:
        d = Path(runtime_dir)
        main = f"pid {d / 'nginx.pid'};\nerror_log {d / 'error.log'} info;\ndaemon off;\n"
        runtime = (
            "".join(
                f"    {name} {d / folder};\n"
                for name, folder in (
                    ("client_body_temp_path", "client_body"),
                    ("proxy_temp_path", "proxy"),
                    ("fastcgi_temp_path", "fastcgi"),
                    ("uwsgi_temp_path", "uwsgi"),
                    ("scgi_temp_path", "scgi"),
                )
            )
            + f"    access_log {d / 'access.log'};\n"
        )
    return f"""# deploylab nginx-conf reverse-proxy: nginx in front of {len(backends)} backend(s)
worker_processes 1;
{main}events {{
    worker_connections 256;
}}
http {{
{runtime}    upstream backend {{
{servers}
        keepalive 16;
    }}
    server {{
        listen {listen_text};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""
