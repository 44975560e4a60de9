"""The nginx lab's checker: a real nginx on a learner's configuration, in its own sandbox.

Every isolation claim of :mod:`deploylab.nginx_lab.runner` has its attack here: a config
that includes ``/etc/shadow``, one that proxies to an outside address or to a service on the
host's loopback, one that serves the instructor's files with ``root``/``alias``, one that
writes into the harness's pipes through ``/proc``, one that never lets nginx start, huge and
hanging ones. They run through :func:`deploylab.nginx_lab.check_site` as the trusted tests
do, in the root (fresh uid) mode and in the user-namespace mode.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import require_tool

from deploylab.grading import sandbox
from deploylab.nginx_lab import (
    PROXY_LESSON,
    RELOAD_LESSON,
    WEIGHTED_LESSON,
    ConfigRejected,
    check_site,
    proxy_scenario,
    reload_scenario,
    render,
    runner,
    try_site,
    upstream_scenario,
)
from deploylab.nginx_lab.checks import _job
from deploylab.nginx_lab.feedback import block_path, safe_text

ROOT = Path(__file__).resolve().parents[1]

PROXY = """
server {
    listen ${LISTEN};
    location / {
        proxy_pass http://${APP};
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
}
"""
WEIGHTED = """
upstream app {
    server ${APP_1} weight=${WEIGHT_1};
    server ${APP_2} weight=${WEIGHT_2};
    server ${APP_3} weight=${WEIGHT_3};
}
server {
    listen ${LISTEN};
    location / { proxy_pass http://app; }
}
"""
AFTER_RELOAD = """
upstream app {
    server ${APP_2};
    server ${APP_3};
}
server {
    listen ${LISTEN};
    location / { proxy_pass http://app; }
}
"""


def require_lab_sandbox() -> None:
    require_tool("nginx")
    require_tool("bwrap", "bubblewrap")
    if not runner.sandbox_available():
        if os.environ.get("CI"):
            pytest.fail("the nginx lab sandbox must work on CI")
        pytest.skip("bubblewrap cannot make a sandbox here")


def proxy_with(location_lines: str) -> str:
    return (
        "server {\n    listen ${LISTEN};\n    location / {\n"
        + location_lines
        + "\n        proxy_set_header X-Real-IP ${APP};\n    }\n}\n"
    )


def rejection(template: str, scenario: dict = PROXY_LESSON) -> str:
    with pytest.raises(ConfigRejected) as error:
        check_site(template, scenario)
    message = error.value.deploylab_message
    assert message == str(error.value)
    return message


@pytest.fixture(scope="module", params=["fresh uid", "user namespace"])
def lab_sandbox_mode(request):
    """Both sandbox modes: as root with a fresh uid, and bwrap's user namespace (uid 65534).

    Module-scoped, so pytest runs the tests of one mode together and they share one sandbox
    session (a sandbox and a Python in it: about a second on a busy machine), as a grading
    run does; a test that breaks the session gets a new one (:func:`runner.run_job`)."""
    require_lab_sandbox()
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "user namespace":
            problem = sandbox._probe(sandbox.check_available(), privileged=False)
            if problem:
                pytest.skip(f"user namespaces are not available here: {problem}")
            patch.setattr(sandbox, "_privileged_mode", lambda: False)
        elif not sandbox._privileged_mode():
            pytest.skip("needs root (the fresh-uid mode)")
        patch.setattr(runner, "_SESSION", None)
        yield request.param
        if runner._SESSION is not None:
            runner._SESSION.close()


@pytest.fixture
def lab_sandbox(lab_sandbox_mode, monkeypatch):
    """The mode's shared session, and no result remembered from an earlier test."""
    from deploylab.nginx_lab import checks

    monkeypatch.setattr(checks, "_CACHE", {})
    return lab_sandbox_mode


@pytest.fixture
def fresh_lab_sandbox(lab_sandbox):
    """Like ``lab_sandbox``, but no session has been started yet."""
    if runner._SESSION is not None:
        runner._SESSION.close()
        runner._SESSION = None
    return lab_sandbox


# ---------------------------------------------------------------------------------------
# pure parts
# ---------------------------------------------------------------------------------------
def test_render_fills_only_the_known_placeholders():
    text = render(
        "listen ${LISTEN}; proxy_pass http://${APP}$request_uri; set $a ${b};",
        {
            "LISTEN": "127.0.0.1:8000",
            "APP": "127.0.0.1:8080",
        },
    )
    assert (
        text == "listen 127.0.0.1:8000; proxy_pass http://127.0.0.1:8080$request_uri; set $a ${b};"
    )


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: proxy_scenario(app="93.184.216.34:80"), "'93.184.216.34:80'"),
        (lambda: proxy_scenario(listen="127.0.0.1:80"), "'127.0.0.1:80'"),
        (lambda: proxy_scenario(clients=["10.0.0.1"]), "'10.0.0.1'"),
        (lambda: upstream_scenario(weights=[1]), "[1]"),
        (lambda: upstream_scenario(weights=[0, 1]), "[0, 1]"),
        (lambda: upstream_scenario(rounds=0), "rounds 0"),
    ],
)
def test_bad_scenarios_name_the_value(call, named):
    with pytest.raises(ValueError) as error:
        call()
    assert named in str(error.value)


def test_feedback_hides_paths_hidden_values_and_file_contents():
    values = {"LISTEN": "127.0.0.1:8461", "APP": "127.0.0.2:9137", "WEIGHT_1": "7"}
    text = safe_text(
        "[emerg] bind() to 127.0.0.2:9137 failed (98: Address already in use) in "
        "/tmp/dl-nginx-abc/site.conf:3 <script>",
        values,
    )
    assert text == (
        "[emerg] bind() to ${APP} failed (98: Address already in use) in line 3 ?script?"
    )
    leaked = safe_text('[emerg] unknown directive "root:$y$j9T$x:19000:0:99999:7:::"')
    assert "root:" not in leaked and '"…"' in leaked
    assert len(safe_text("x" * 5000)) == 300
    assert block_path("upstream a {\n server x;\n}\nserver {\n location /api {\n  x;\n", 6) == (
        "server { location /api {"
    )


def test_bad_templates_and_steps_are_refused_before_nginx_runs():
    assert "not int" in rejection(42)  # type: ignore[arg-type]
    assert "65536 bytes" in rejection("# " + "x" * 70_000 + PROXY)
    assert "${APP}" in rejection(PROXY.replace("${APP}", "127.0.0.1:8080"))
    with pytest.raises(ConfigRejected, match="command 1 is not a command of this lab"):
        check_site(AFTER_RELOAD, RELOAD_LESSON, ["rm -rf /"])
    with pytest.raises(ConfigRejected, match="list of commands"):
        check_site(AFTER_RELOAD, RELOAD_LESSON, "nginx -s reload")


# ---------------------------------------------------------------------------------------
# a real nginx
# ---------------------------------------------------------------------------------------
@pytest.mark.nginx
def test_a_correct_reverse_proxy_is_seen_by_the_app(lab_sandbox):
    report = check_site(PROXY, PROXY_LESSON)
    assert report["interfaces"] == ["lo"]  # its own network namespace: loopback only
    assert report["answered"] == report["sent"] == 6
    chained = [r for r in report["requests"] if r["forwarded_for"]]
    assert {r["client"] for r in chained} == {"127.0.0.10", "127.0.0.20"}
    for request in report["requests"]:
        seen = request["seen"]
        assert seen["path"] == request["path"]
        assert seen["host"] == "shop.example:8000"
        assert seen["x_real_ip"] == request["client"]
        expected = request["client"]
        if request["forwarded_for"]:
            expected = f"203.0.113.7, {request['client']}"
        assert seen["x_forwarded_for"] == expected


@pytest.mark.nginx
def test_nginx_defaults_are_what_the_lab_says(lab_sandbox):
    """Without the three headers the app sees nginx's defaults (the lab's teaching text)."""
    bare = "server {\n listen ${LISTEN};\n location / { proxy_pass http://${APP}; }\n}\n"
    report = check_site(bare, PROXY_LESSON)
    seen = report["requests"][0]["seen"]
    assert seen["host"] == "127.0.0.1:8080"
    assert seen["x_real_ip"] is None and seen["x_forwarded_for"] is None


@pytest.mark.nginx
def test_weights_split_exactly_like_smooth_weighted_round_robin(lab_sandbox):
    report = check_site(WEIGHTED, WEIGHTED_LESSON)
    assert report["served"] == {"app-1": 20, "app-2": 4, "app-3": 4}
    order = [r["answered_by"][-1] for r in report["requests"][:7]]
    assert "".join(order) == "1121311"  # a a b a c a a, as in lesson 02
    hidden = upstream_scenario(
        listen="127.0.0.1:8602",
        apps=["127.0.0.1:9411", "127.0.0.4:9412", "127.0.0.1:9413"],
        weights=[2, 3, 1],
        rounds=3,
    )
    assert check_site(WEIGHTED, hidden)["served"] == {"app-1": 6, "app-2": 9, "app-3": 3}


@pytest.mark.nginx
@pytest.mark.slow
def test_reload_under_traffic_loses_nothing_and_a_restart_does(lab_sandbox):
    good = check_site(AFTER_RELOAD, RELOAD_LESSON, ["nginx -t", "sudo nginx -s reload"])
    change = good["change"]
    assert change["sent"] > 20 and change["failed"] == 0, change
    assert change["served_after"] == {"app-2": 4, "app-3": 4}
    assert good["tested_before_signal"] and change["steps_ok"] and change["running"]
    restart = check_site(AFTER_RELOAD, RELOAD_LESSON, ["nginx -s stop", "nginx"])["change"]
    assert restart["failed"] > 0 and set(restart["failures"]) <= {
        "refused",
        "reset",
        "no HTTP answer",
    }
    assert restart["served_after"] == {"app-2": 4, "app-3": 4}
    twice = check_site(AFTER_RELOAD, RELOAD_LESSON, ["nginx -s reload", "nginx"])["change"]
    assert not twice["steps_ok"]  # starting a second master fails, as on a server


#: The reload task with its traffic starved: each client waits a second between two of its
#: requests, far longer than nginx takes to stop and start again, so the clients cannot be
#: the ones to see nginx down (as on a loaded machine, where they share one event loop with
#: the steps). A restart must be caught all the same.
STARVED_RELOAD = reload_scenario(traffic_pause=1.0)


@pytest.mark.nginx
@pytest.mark.slow
def test_a_restart_is_caught_even_when_the_traffic_clients_miss_it(lab_sandbox, capsys):
    good = check_site(AFTER_RELOAD, STARVED_RELOAD, ["nginx -t", "nginx -s reload"])["change"]
    assert good["steps_ok"] and good["failed"] == 0, good
    assert good["served_after"] == {"app-2": 4, "app-3": 4}
    # a stop then a start: nginx is down between the two steps
    restart = check_site(AFTER_RELOAD, STARVED_RELOAD, ["nginx -s stop", "nginx"])["change"]
    assert restart["steps_ok"] and restart["failed"] > 0, restart
    assert set(restart["failures"]) <= {"refused", "reset", "no HTTP answer"}, restart
    assert restart["served_after"] == {"app-2": 4, "app-3": 4}
    # one step that stops and starts nginx, as the learner sees it with try_site
    try_site(AFTER_RELOAD, STARVED_RELOAD, ["systemctl restart nginx"])
    out = capsys.readouterr().out
    lost = re.search(r"while the steps ran: (\d+) requests, (\d+) failed (.*)", out)
    assert lost is not None, out
    assert int(lost[2]) > 0 and "refused" in lost[3], out
    assert "nginx is running afterwards" in out


@pytest.mark.nginx
def test_rejected_config_quotes_nginx_and_says_where_to_look(lab_sandbox):
    message = rejection(PROXY.replace("proxy_pass", "proxy_pas"))
    assert message.startswith(
        'nginx -t rejected your configuration: [emerg] unknown directive "proxy_pas" in line 5'
    )
    assert "inside server { location / {" in message
    assert "dl-nginx" not in message and "/tmp" not in message
    notes = "http {\n upstream backend { server ${APP}; }\n location / { proxy_pass http://backend; }\n}\n# ${LISTEN}\n"
    assert "already goes inside http" in rejection(notes)


@pytest.mark.nginx
def test_a_config_that_never_lets_nginx_start(lab_sandbox):
    # nginx -t already tries the listening sockets: a privileged port, the app's own address.
    low_port = PROXY.replace("listen ${LISTEN};", "listen 127.0.0.1:80; # ${LISTEN}")
    message = rejection(low_port)
    assert message.startswith(
        "nginx -t rejected your configuration: [emerg] bind() to 127.0.0.1:80"
    )
    assert "13: Permission denied" in message and "listen on ${LISTEN}" in message
    taken = PROXY.replace("listen ${LISTEN};", "listen ${APP}; # ${LISTEN}")
    message = rejection(taken)
    assert "bind() to ${APP} failed (98: Address already in use)" in message
    quiet = PROXY.replace("listen ${LISTEN};", "listen 127.0.0.1:8999; # ${LISTEN}")
    assert rejection(quiet).startswith("nginx started but nothing listens on ${LISTEN}")
    # And the job after these still runs in the same session.
    assert check_site(PROXY, PROXY_LESSON)["answered"] == 6


@pytest.mark.nginx
def test_include_etc_shadow_finds_nothing(lab_sandbox):
    message = rejection(PROXY.replace("server {", "include /etc/shadow;\nserver {", 1))
    assert 'open() "/etc/shadow" failed (2: No such file or directory)' in message
    passwd = rejection(PROXY.replace("server {", "include /etc/passwd;\nserver {", 1))
    assert "root:" not in passwd and "No such file" in passwd


@pytest.mark.nginx
def test_root_and_alias_cannot_serve_the_instructors_files(lab_sandbox):
    master = ROOT / "autograder" / "source" / "nginx" / "nginx.ipynb"
    assert master.exists()
    snoop = (
        "server {\n    listen ${LISTEN};\n"
        f"    location /master/ {{ alias {master.parent}/; }}\n"
        f"    location /course/ {{ root {ROOT}; }}\n"
        "    location /etc/ { alias /etc/; }\n"
        "    location /proc/ { alias /proc/; }\n"
        "    location / { proxy_pass http://${APP}; }\n}\n"
    )
    scenario = proxy_scenario(
        paths=[
            "/master/nginx.ipynb",
            "/course/autograder/source/nginx/nginx.ipynb",
            "/course/autograder/nbgrader_config.py",
            "/etc/shadow",
            "/proc/self/environ",
            "/etc/hosts",
        ]
    )
    report = check_site(snoop, scenario)
    status = {r["path"]: r["status"] for r in report["requests"] if not r["forwarded_for"]}
    assert status["/etc/hosts"] == 200  # the sandbox's own made-up file: nginx does serve files
    for path in (
        "/master/nginx.ipynb",
        "/course/autograder/source/nginx/nginx.ipynb",
        "/course/autograder/nbgrader_config.py",
        "/etc/shadow",
        "/proc/self/environ",
    ):
        assert status[path] == 404, path


@pytest.mark.nginx
def test_proxy_pass_to_an_outside_address_has_no_route(lab_sandbox):
    """203.0.113.1 (TEST-NET-3) is never reached: the namespace has no route out, so the
    connect fails at once with ENETUNREACH — no packet is sent, here or anywhere."""
    outside = proxy_with("        proxy_pass http://203.0.113.1:80; # ${APP}")
    started = time.monotonic()
    report = check_site(outside, PROXY_LESSON)
    assert time.monotonic() - started < 20
    assert report["interfaces"] == ["lo"]
    assert {r["status"] for r in report["requests"]} == {502}
    assert report["served"] == {}
    job = _job(outside, PROXY_LESSON, None)
    job["requests"] = job["requests"][:1]
    result = runner.run_job(job)
    assert any("(101: Network is unreachable)" in line for line in result["error_log"])


@pytest.mark.nginx
def test_the_hosts_loopback_services_are_out_of_reach(lab_sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        scenario = proxy_scenario(listen="127.0.0.1:8000", app="127.0.0.1:8080")
        report = check_site(proxy_with(f"        proxy_pass http://127.0.0.1:{port};"), scenario)
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
    assert accepted == []
    assert {r["status"] for r in report["requests"]} == {502}


@pytest.mark.nginx
def test_nginx_cannot_write_into_the_harness_through_proc(lab_sandbox):
    """A forged result written to the harness's stdout would need /proc/PID/fd: there is no
    /proc, so nginx cannot open the log and does not start."""
    forged = PROXY.replace("location / {", "access_log /proc/2/fd/1;\n    location / {", 1)
    message = rejection(forged)
    assert 'open() "/proc/2/fd/1" failed (2: No such file or directory)' in message


@pytest.mark.nginx
def test_huge_and_hanging_configs_are_bounded(lab_sandbox):
    # Big but under the limit: thousands of directives; nginx takes it, requests still work.
    locations = "".join(f"    location /l{i} {{ return 204; }}\n" for i in range(1800))
    many = PROXY.replace("    location / {", locations + "    location / {", 1)
    assert 60_000 < len(many) < 64 * 1024
    assert check_site(many, PROXY_LESSON)["answered"] == 6
    # Endless files: nginx reads as many bytes as stat() reports, none for a device.
    started = time.monotonic()
    endless = PROXY.replace("server {", "include /dev/zero;\ninclude /dev/urandom;\nserver {", 1)
    assert check_site(endless, PROXY_LESSON)["answered"] == 6
    # A proxy that loops into itself until it runs out of connections; and slow answers.
    loop = proxy_with("        proxy_pass http://${LISTEN}; # ${APP}")
    assert check_site(loop, PROXY_LESSON)["answered"] == 0
    slow = proxy_with("        limit_rate 1; return 200 '" + "x" * 200 + "'; # ${APP}")
    assert check_site(slow, PROXY_LESSON)["answered"] == 0
    assert time.monotonic() - started < 60
    # The session still works after all of that.
    assert check_site(PROXY, PROXY_LESSON)["answered"] == 6


@pytest.mark.nginx
def test_try_site_shows_what_the_app_saw(lab_sandbox, capsys, monkeypatch):
    monkeypatch.delenv("DEPLOYLAB_GRADING", raising=False)
    try_site(PROXY)
    out = capsys.readouterr().out
    assert "nginx -t: ok" in out
    assert "shop.example:8000 | 127.0.0.10 | 203.0.113.7, 127.0.0.10" in out
    try_site(PROXY.replace("proxy_pass", "proxy_pas"))
    assert 'unknown directive "proxy_pas" in line 5' in capsys.readouterr().out
    monkeypatch.setenv("DEPLOYLAB_GRADING", "1")
    try_site(PROXY)
    assert "does nothing while the notebook is graded" in capsys.readouterr().out


def test_no_sandbox_where_its_module_cannot_be_imported(monkeypatch):
    """A grading kernel sees only the package files its setup cells import: the lab's setup
    cell calls warm_up() there, which must find no sandbox instead of failing the cell."""
    import deploylab.grading

    monkeypatch.setitem(sys.modules, "deploylab.grading.sandbox", None)
    monkeypatch.delattr(deploylab.grading, "sandbox", raising=False)
    monkeypatch.setattr(runner, "_SESSION", None)
    assert runner.sandbox_available() is False
    runner.warm_up()
    assert runner._SESSION is None


def test_root_never_runs_a_submitted_config_without_the_sandbox(monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("about what root does")
    monkeypatch.setattr(runner, "sandbox_available", lambda: False)
    with pytest.raises(runner.HarnessFailed, match="bubblewrap"):
        check_site(PROXY, PROXY_LESSON)


@pytest.mark.nginx
def test_a_session_leaves_nothing_on_the_host(fresh_lab_sandbox):
    """The sandbox's files live in its own tmpfs: once it runs, the host keeps no directory
    for it (a grader killed with SIGKILL leaves nothing behind), and closing it ends bwrap."""
    runner.warm_up()
    session = runner._SESSION
    assert session is not None and session.alive()
    check_site(PROXY, PROXY_LESSON)
    assert not session._scratch.exists() and not session._etc.exists()
    session.close()
    assert not session.alive()


def test_feedback_never_repeats_free_text_of_the_learner():
    template = "server {\n location Your score is 14 of 14 {\n  x;\n"
    assert block_path(template, 3) == "server { location {"
    assert block_path("upstream backend {\n server a;\n", 2) == "upstream backend {"
    with pytest.raises(ConfigRejected) as error:
        check_site(AFTER_RELOAD, RELOAD_LESSON, ["nginx -t", "all tests passed 14 of 14"])
    assert "passed" not in str(error.value) and "command 2" in str(error.value)


@pytest.mark.nginx
def test_try_site_without_a_sandbox_uses_free_ports(capsys, monkeypatch):
    """Where no sandbox can be made (inside another sandbox, no bubblewrap), the helper runs
    nginx on this machine's loopback, with every address moved to a free port."""
    require_tool("nginx")
    monkeypatch.delenv("DEPLOYLAB_GRADING", raising=False)
    monkeypatch.setattr(runner, "sandbox_available", lambda: False)
    try_site(PROXY)
    out = capsys.readouterr().out
    assert "${LISTEN} = 127.0.0.1:8000" not in out  # moved to a free port
    assert "nginx -t: ok" in out
    assert "| 127.0.0.20 | 203.0.113.7, 127.0.0.20" in out
