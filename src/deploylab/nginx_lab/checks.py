"""Scenarios, the grader's checks and the learner's "try it" helper for the nginx lab.

A learner writes nginx configuration as a *template*: the text of a file that nginx includes
inside ``http { }`` (an ``upstream`` and a ``server`` block, as in ``/etc/nginx/conf.d/``),
with the addresses written as placeholders — ``${LISTEN}`` where nginx listens, ``${APP}`` or
``${APP_1}``, ``${APP_2}``… for the apps, ``${WEIGHT_1}``… for weights — the way the official
nginx container image fills in its ``templates/*.template`` files. nginx's own variables
(``$remote_addr``, ``$http_host``…) are left alone. A *scenario* (plain data, from
:func:`proxy_scenario`, :func:`upstream_scenario` or :func:`reload_scenario`) says what the
placeholders stand for and which requests to send from which client addresses.

:func:`check_site` runs a template through a real nginx in the lab's sandbox and returns a
report (plain data) for the tests; :func:`try_site` does the same for the learner and prints
what the apps saw.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections import Counter

from deploylab.nginx_lab import feedback, runner
from deploylab.nginx_lab.feedback import ConfigRejected
from deploylab.nginx_lab.harness import (
    STEPS,
    TRAFFIC_AFTER,
    TRAFFIC_BEFORE,
    TRAFFIC_PAUSE,
    normalise_step,
)

__all__ = [
    "BEFORE_RELOAD",
    "MAX_TEMPLATE_BYTES",
    "PROXY_LESSON",
    "RELOAD_LESSON",
    "TWO_APPS_LESSON",
    "WEIGHTED_LESSON",
    "check_site",
    "proxy_scenario",
    "reload_scenario",
    "render",
    "try_site",
    "upstream_scenario",
]

#: Largest template the checks accept (a lab answer is a few hundred bytes).
MAX_TEMPLATE_BYTES = 64 * 1024
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_LESSON_CLIENTS = ("127.0.0.10", "127.0.0.20", "127.0.0.30")

#: The configuration nginx runs before the reload task's change: round robin over two apps.
BEFORE_RELOAD = """upstream app {
    server ${APP_1};
    server ${APP_2};
}
server {
    listen ${LISTEN};
    location / {
        proxy_pass http://app;
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
"""


def _address(text: str, what: str) -> tuple[str, int]:
    """``(host, port)`` of a loopback ``HOST:PORT``; ValueError naming ``text`` otherwise."""
    host, _, port = str(text).rpartition(":")
    try:
        ip = ipaddress.IPv4Address(host)
        number = int(port)
    except ValueError:
        raise ValueError(
            f"{what} {text!r}: expected a loopback HOST:PORT such as 127.0.0.1:8080"
        ) from None
    if not ip.is_loopback or not 1024 <= number <= 65535:
        raise ValueError(
            f"{what} {text!r}: expected an address in 127.0.0.0/8 and a port 1024-65535"
        )
    return str(ip), number


def _client(text: str) -> str:
    try:
        ip = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"client {text!r}: expected an IPv4 address in 127.0.0.0/8") from None
    if not ip.is_loopback:
        raise ValueError(f"client {text!r}: expected an IPv4 address in 127.0.0.0/8")
    return str(ip)


def _host_for(listen: str) -> str:
    return f"shop.example:{listen.rpartition(':')[2]}"


def proxy_scenario(
    *,
    listen: str = "127.0.0.1:8000",
    app: str = "127.0.0.1:8080",
    clients: tuple[str, ...] | list[str] = _LESSON_CLIENTS[:2],
    host: str | None = None,
    paths: tuple[str, ...] | list[str] = ("/", "/orders?page=2"),
    forwarded_for: str = "203.0.113.7",
) -> dict:
    """The reverse-proxy task: nginx on ``listen`` in front of one app on ``app``.

    Each client asks for each path with ``Host: host``; each client also sends one request
    that already carries ``X-Forwarded-For: forwarded_for`` (as if it came through another
    proxy).

    >>> scenario = proxy_scenario()
    >>> scenario["values"], len(scenario["requests"])
    ({'LISTEN': '127.0.0.1:8000', 'APP': '127.0.0.1:8080'}, 6)
    >>> proxy_scenario(app="10.0.0.5:80")
    Traceback (most recent call last):
    ...
    ValueError: app '10.0.0.5:80': expected an address in 127.0.0.0/8 and a port 1024-65535
    """
    _address(listen, "listen")
    _address(app, "app")
    host = host or _host_for(listen)
    requests = []
    for client in clients:
        for path in paths:
            requests.append({"client": _client(client), "path": path, "host": host})
        requests.append(
            {"client": client, "path": paths[0], "host": host, "forwarded_for": forwarded_for}
        )
    return {
        "kind": "proxy",
        "values": {"LISTEN": listen, "APP": app},
        "required": ["LISTEN", "APP"],
        "apps": {"app": app},
        "requests": requests,
    }


def upstream_scenario(
    *,
    listen: str = "127.0.0.1:8000",
    apps: tuple[str, ...] | list[str] = ("127.0.0.1:8080", "127.0.0.1:8081"),
    weights: tuple[int, ...] | list[int] | None = None,
    clients: tuple[str, ...] | list[str] = _LESSON_CLIENTS,
    host: str | None = None,
    path: str = "/",
    rounds: int = 4,
) -> dict:
    """The upstream tasks: nginx on ``listen`` balancing over ``apps`` (``${APP_1}``…),
    with ``weights`` (``${WEIGHT_1}``…) if given. ``rounds`` × the total weight requests
    are sent one after another, the clients taking turns.

    >>> scenario = upstream_scenario(apps=["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"], weights=[5, 1, 1])
    >>> scenario["values"]["WEIGHT_1"], scenario["weights"], len(scenario["requests"])
    ('5', {'app-1': 5, 'app-2': 1, 'app-3': 1}, 28)
    """
    _address(listen, "listen")
    if weights is not None and len(weights) != len(apps):
        raise ValueError(f"weights {list(weights)!r}: expected one per app ({len(apps)})")
    if weights is not None and not all(type(w) is int and 1 <= w <= 100 for w in weights):
        raise ValueError(f"weights {list(weights)!r}: expected whole numbers from 1 to 100")
    if type(rounds) is not int or not 1 <= rounds <= 20:
        raise ValueError(f"rounds {rounds!r}: expected a whole number from 1 to 20")
    values = {"LISTEN": listen}
    named = {}
    for number, app in enumerate(apps, start=1):
        _address(app, f"app {number}")
        values[f"APP_{number}"] = app
        named[f"app-{number}"] = app
    chosen = list(weights) if weights is not None else [1] * len(apps)
    if weights is not None:
        values.update({f"WEIGHT_{n}": str(w) for n, w in enumerate(weights, start=1)})
    host = host or _host_for(listen)
    clients = [_client(client) for client in clients]
    count = rounds * sum(chosen)
    requests = [
        {"client": clients[index % len(clients)], "path": path, "host": host}
        for index in range(count)
    ]
    return {
        "kind": "upstream",
        "values": values,
        # Addresses must be placeholders (nothing works without them); weights are checked
        # by what nginx does with them, so a fixed weight fails where the weights change.
        "required": sorted(key for key in values if not key.startswith("WEIGHT")),
        "apps": named,
        "weights": dict(zip(named, chosen, strict=True)),
        "requests": requests,
    }


def reload_scenario(
    *,
    listen: str = "127.0.0.1:8000",
    apps: tuple[str, ...] | list[str] = ("127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"),
    clients: tuple[str, ...] | list[str] = ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"),
    host: str | None = None,
    path: str = "/",
    traffic_pause: float = TRAFFIC_PAUSE,
) -> dict:
    """The reload task: nginx runs :data:`BEFORE_RELOAD` (round robin over app-1 and app-2);
    the learner's template takes app-1 out and adds app-3 (``${APP_3}``), applied by the
    learner's steps while every client keeps sending requests, each waiting
    ``traffic_pause`` seconds between two of its requests (a long pause starves the clients,
    as a loaded machine can: a restart must be caught all the same).

    >>> scenario = reload_scenario()
    >>> scenario["required"], scenario["after_apps"]
    (['APP_2', 'APP_3', 'LISTEN'], ['app-2', 'app-3'])
    >>> reload_scenario(traffic_pause=60)
    Traceback (most recent call last):
    ...
    ValueError: traffic_pause 60: expected seconds from 0 to 2
    """
    if len(apps) != 3:
        raise ValueError(f"apps {list(apps)!r}: the reload task has exactly three apps")
    if type(traffic_pause) not in (int, float) or not 0 <= traffic_pause <= 2:
        raise ValueError(f"traffic_pause {traffic_pause!r}: expected seconds from 0 to 2")
    base = upstream_scenario(listen=listen, apps=apps, clients=clients, host=host, path=path)
    host = host or _host_for(listen)
    clients = [_client(client) for client in clients]
    return {
        "kind": "reload",
        "values": base["values"],
        "required": ["APP_2", "APP_3", "LISTEN"],
        "apps": base["apps"],
        "after_apps": ["app-2", "app-3"],
        "requests": [],
        "traffic": [{"client": client, "path": path, "host": host} for client in clients],
        "traffic_pause": traffic_pause,
        "after": [
            {"client": clients[index % len(clients)], "path": path, "host": host}
            for index in range(8)
        ],
    }


#: The scenarios of the lab's visible tests (the lesson's ports and clients).
PROXY_LESSON = proxy_scenario()
TWO_APPS_LESSON = upstream_scenario()
WEIGHTED_LESSON = upstream_scenario(
    apps=("127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"), weights=(5, 1, 1)
)
RELOAD_LESSON = reload_scenario()


def render(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``${NAME}`` of ``values`` filled in (others left as they are).

    >>> render("listen ${LISTEN};\\nset $x ${remote_addr};", {"LISTEN": "127.0.0.1:8000"})
    'listen 127.0.0.1:8000;\\nset $x ${remote_addr};'
    """
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def _validate_template(template, name: str, scenario: dict) -> str:
    if type(template) is not str:
        raise ConfigRejected(
            f"{name} should be a string of nginx configuration, not {type(template).__name__}"
        )
    size = len(template.encode("utf-8", "replace"))
    if size > MAX_TEMPLATE_BYTES:
        raise ConfigRejected(
            f"{name} is {size} bytes: an answer of this lab is at most {MAX_TEMPLATE_BYTES} bytes"
        )
    if "\x00" in template:
        raise ConfigRejected(f"{name} contains a NUL character")
    missing = [key for key in scenario["required"] if "${" + key + "}" not in template]
    if missing:
        shown = ", ".join("${" + key + "}" for key in missing)
        raise ConfigRejected(
            f"{name} never uses {shown}: write the addresses as placeholders; "
            "the grader fills in other values in other tests"
        )
    return template


def _validate_steps(steps) -> list[str]:
    if type(steps) not in (list, tuple) or not all(type(step) is str for step in steps):
        raise ConfigRejected("reload_steps should be a list of commands (strings)")
    if not 1 <= len(steps) <= 10:
        raise ConfigRejected("reload_steps should hold between 1 and 10 commands")
    normalised = []
    for number, step in enumerate(steps, start=1):
        command = normalise_step(step)
        if command is None:
            # The learner's text is not repeated: feedback holds only the grader's words.
            raise ConfigRejected(
                f"reload_steps: command {number} is not a command of this lab; use "
                + ", ".join(sorted(STEPS))
            )
        normalised.append(command)
    return normalised


def _remap_ports(scenario: dict) -> dict:
    """A copy of ``scenario`` with every address moved to a free port (for a helper run on
    the machine's real loopback, where the lesson's ports may be taken)."""
    from deploylab.loopback import free_port

    scenario = copy.deepcopy(scenario)
    mapping = {}
    for key, value in scenario["values"].items():
        if key == "LISTEN" or key.startswith("APP"):
            host, _ = _address(value, key)
            mapping[value] = f"{host}:{free_port(host)}"
            scenario["values"][key] = mapping[value]
    scenario["apps"] = {name: mapping[address] for name, address in scenario["apps"].items()}
    return scenario


def _job(template: str, scenario: dict, steps: list[str] | None) -> dict:
    values = scenario["values"]
    listen = _address(values["LISTEN"], "listen")
    job = {
        "backends": [
            {"name": name, "host": _address(address, name)[0], "port": _address(address, name)[1]}
            for name, address in scenario["apps"].items()
        ],
        "listen": list(listen),
        "requests": scenario["requests"],
        "deadline": 10,
    }
    if scenario["kind"] == "reload":
        pause = scenario.get("traffic_pause", TRAFFIC_PAUSE)
        # each client waits the pause between its requests before and after the steps
        job["deadline"] = 15 + (TRAFFIC_BEFORE + TRAFFIC_AFTER) * pause
        job["site"] = render(BEFORE_RELOAD, values)
        job["change"] = {
            "site": render(template, values),
            "steps": steps or [],
            "traffic": scenario["traffic"],
            "pause": pause,
            "after": scenario["after"],
        }
    else:
        job["site"] = render(template, values)
    return job


_CACHE: dict[str, dict] = {}
_CACHE_SIZE = 32


def _run(template: str, scenario: dict, steps: list[str] | None, sandboxed: bool) -> dict:
    key = json.dumps([template, scenario, steps, sandboxed], sort_keys=True)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = runner.run_job(_job(template, scenario, steps), sandboxed=sandboxed)
    return copy.deepcopy(_CACHE[key])


def _header(record: dict, name: str) -> str | None:
    values = [value for key, value in record["headers"] if key.lower() == name]
    return ", ".join(values) if values else None


def _seen(records: list[dict]) -> dict | None:
    """What the app saw of one request (the last time it reached an app)."""
    if not records:
        return None
    record = records[-1]
    return {
        "app": record["backend"],
        "method": record["method"],
        "path": record["target"],
        "host": _header(record, "host"),
        "x_real_ip": _header(record, "x-real-ip"),
        "x_forwarded_for": _header(record, "x-forwarded-for"),
    }


def _requests(rows: list[dict]) -> list[dict]:
    return [
        {
            "client": row["client"],
            "path": row["path"],
            "host": row["host"],
            "forwarded_for": row.get("forwarded_for"),
            "status": row["status"],
            "error": row["error"],
            "answered_by": row["answer"],
            "seen": _seen(row["seen"]),
        }
        for row in rows
    ]


def _served(rows: list[dict]) -> dict[str, int]:
    counts = Counter(record["backend"] for row in rows for record in row["seen"])
    return dict(sorted(counts.items()))


def _report(result: dict, scenario: dict, steps: list[str] | None) -> dict:
    requests = _requests(result["requests"])
    report = {
        "kind": scenario["kind"],
        "sent": len(requests),
        "answered": sum(1 for r in requests if r["status"] == 200 and r["answered_by"]),
        "requests": requests,
        "served": _served(result["requests"]),
        "apps": sorted(scenario["apps"]),
        "interfaces": result["interfaces"],
    }
    if scenario.get("weights"):
        report["weights"] = dict(scenario["weights"])
    change = result.get("change")
    if change is not None:
        after = _requests(change["after"])
        report["change"] = {
            "steps": [step["step"] for step in change["steps"]],
            "steps_ok": all(step["ok"] for step in change["steps"]) and bool(change["steps"]),
            "sent": change["sent"],
            "failed": change["failed"],
            "failures": change["failures"],
            "running": change["running"],
            "after": after,
            "served_after": _served(change["after"]),
            "answered_after": sum(1 for r in after if r["status"] == 200 and r["answered_by"]),
        }
        report["tested_before_signal"] = _tested_first(steps or [])
    return report


def _tested_first(steps: list[str]) -> bool:
    """Does ``nginx -t`` come before the first command that touches the running nginx?"""
    for step in steps:
        action = STEPS[step]
        if action == "test":
            return True
        if action != "reopen":
            return False
    return False


def check_site(template, scenario: dict, steps=None, *, sandboxed: bool | None = None) -> dict:
    """Run ``template`` in a real nginx for ``scenario`` and report what happened.

    ``steps`` (reload scenarios only): the commands that apply the change, e.g.
    ``["nginx -t", "nginx -s reload"]``. Raises :class:`ConfigRejected` (its text is the
    learner's feedback: nginx's own error line, made safe, and where to look) when the
    template is not usable, nginx rejects it or nginx does not start or listen. Otherwise
    the report holds, per request, the client, what it asked, the answer and what the app
    ``seen``; ``served``: requests each app received; for reloads, ``change``: the failed
    requests while the steps ran and the requests after them.

    The grader's nginx runs in the lab's sandbox (:mod:`deploylab.nginx_lab.runner`).
    ``sandboxed=None`` uses the sandbox when it can and otherwise runs nginx on the real
    loopback with the ports moved to free ones — but never as root: a configuration that
    includes ``/etc/shadow`` must not be read with root's rights.
    """
    template = _validate_template(template, "the template", scenario)
    normalised = _validate_steps(steps) if scenario["kind"] == "reload" else None
    if sandboxed is None:
        sandboxed = runner.sandbox_available()
    if not sandboxed:
        import os

        if os.geteuid() == 0:
            raise runner.HarnessFailed(
                "the nginx lab needs its sandbox (apt-get install bubblewrap) to run a "
                "submitted configuration as root"
            )
        scenario = _remap_ports(scenario)
    try:
        result = _run(template, scenario, normalised, sandboxed)
    except runner.HarnessFailed as error:
        shown = feedback.safe_text(str(error))
        raise ConfigRejected(f"grader problem, not your configuration: {shown}") from None
    _raise_if_rejected(result, template, scenario)
    return _report(result, scenario, normalised)


def _raise_if_rejected(result: dict, template: str, scenario: dict) -> None:
    values = scenario["values"]
    tested = result.get("config_test") or {}
    if scenario["kind"] == "reload":
        tested = result.get("change_test") or tested
        if not (result.get("config_test") or {}).get("ok"):
            raise ConfigRejected("grader problem: the lab's own starting configuration failed")
    if not tested.get("ok"):
        raise feedback.rejection(
            "nginx -t rejected your configuration", tested.get("message", ""), template, values
        )
    if not result.get("started"):
        raise feedback.rejection(
            "nginx -t accepted your configuration but nginx did not start",
            result.get("start_error", ""),
            template,
            values,
        )
    if scenario["kind"] != "reload" and not result.get("listening"):
        raise ConfigRejected(
            "nginx started but nothing listens on ${LISTEN}: put listen ${LISTEN}; in your server { } block"
        )


def try_site(template: str, scenario: dict | None = None, steps=None) -> None:
    """Run ``template`` in a real nginx in front of demo apps and print what happened:
    ``nginx -t``'s verdict, then for each request who sent it, who answered and the headers
    the app saw (or, for a reload, the failed requests and who served afterwards).

    Uses the lab's sandbox with the lesson's ports where it can (no root needed); otherwise
    nginx runs on this machine's loopback with free ports (printed). ``scenario`` defaults
    to the reverse-proxy task's (:data:`PROXY_LESSON`). While a notebook is being graded
    (``DEPLOYLAB_GRADING`` is set in the grading kernel) it only prints a note: the grader
    runs the same checks itself, and grading time is better spent there.
    """
    import os

    if os.environ.get("DEPLOYLAB_GRADING"):
        print(
            "(try_site does nothing while the notebook is graded: the grader runs its own checks)"
        )
        return
    scenario = scenario or PROXY_LESSON
    sandboxed = runner.sandbox_available()
    if not sandboxed:
        scenario = _remap_ports(scenario)
    values = scenario["values"]
    print("placeholders:", ", ".join(f"${{{key}}} = {value}" for key, value in values.items()))
    if type(template) is not str:
        print(f"the template should be a string, not {type(template).__name__}")
        return
    normalised = None
    if scenario["kind"] == "reload":
        try:
            normalised = _validate_steps(steps if steps is not None else ["nginx -s reload"])
        except ConfigRejected as error:
            print(error)
            return
    result = runner.run_job(_job(template, scenario, normalised), sandboxed=sandboxed)
    for label, tested in (
        ("nginx -t", result["config_test"]),
        ("nginx -t (new)", result["change_test"]),
    ):
        if tested is not None:
            verdict = "ok" if tested["ok"] else f"rejected — {_shown(tested['message'])}"
            print(f"{label}: {verdict}")
    if not all(t["ok"] for t in (result["config_test"], result["change_test"]) if t):
        return
    if not result["started"]:
        print("nginx did not start:", _shown(result["start_error"]))
        return
    if scenario["kind"] != "reload" and not result["listening"]:
        print(f"nginx started, but nothing listens on {values['LISTEN']} (${{LISTEN}})")
    report = _report(result, scenario, normalised)
    if report["requests"]:
        _print_requests(report["requests"])
        print("requests each app received:", report["served"] or "none")
    if scenario.get("weights"):
        print("weights:", report["weights"])
    if "change" in report:
        change = report["change"]
        for step in result["change"]["steps"]:
            failed = "" if step["ok"] else f"   → failed: {_shown(step['message'])}"
            print(f"$ {step['step']}{failed}")
        print(
            f"while the steps ran: {change['sent']} requests, {change['failed']} failed {change['failures'] or ''}"
        )
        print("nginx is", "running" if change["running"] else "NOT running", "afterwards")
        _print_requests(change["after"])
        print("requests each app received afterwards:", change["served_after"] or "none")


def _print_requests(requests: list[dict]) -> None:
    print(
        f"{'client':<12} {'request':<34} {'answer':<14} the app saw: Host | X-Real-IP | X-Forwarded-For"
    )
    for row in requests:
        asked = f"GET {row['path']}" + (
            f" (XFF {row['forwarded_for']})" if row["forwarded_for"] else ""
        )
        answer = row["error"] or f"{row['status']} {row['answered_by'] or ''}".strip()
        seen = row["seen"]
        saw = (
            "nothing reached an app"
            if seen is None
            else f"{seen['host']} | {seen['x_real_ip']} | {seen['x_forwarded_for']}"
            + ("" if seen["path"] == row["path"] else f"  (path {seen['path']})")
        )
        print(f"{row['client']:<12} {asked:<34} {answer:<14} {saw}")


def _shown(message: str) -> str:
    """nginx's message as the learner reads it: ``line N`` instead of the lab's file paths."""
    return feedback.safe_text(message, limit=400)
