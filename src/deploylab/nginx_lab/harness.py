"""The program that runs a learner's nginx configuration and watches what happens.

It runs *inside* the nginx lab's sandbox (:mod:`deploylab.nginx_lab.runner`): its own network
namespace (loopback only), a read-only system, one writable directory (the nginx prefix). It
reads one job as JSON on stdin, then:

1. starts the demo apps on the job's loopback addresses, each recording every request it
   receives (:class:`deploylab.balancer.backend.DemoBackend` with ``record``);
2. writes ``nginx.conf`` (the main context: one worker, logs and temp paths in the prefix)
   around ``site.conf`` (the learner's text, included inside ``http { }``) and runs
   ``nginx -t``; stops there if nginx rejects it;
3. starts nginx and sends the job's requests one at a time from several client addresses
   (127.0.0.x), recording the answer and what the apps saw for each;
4. for a change job: installs the new ``site.conf``, runs the learner's steps (``nginx -t``,
   ``nginx -s reload``, …) while clients keep sending requests, counts the requests that
   failed, then sends the "after" requests;
5. stops nginx (its process group, by PID) and the apps, and prints one line: the job's token
   followed by the result as JSON.

Every wait is bounded: each request, each step, and the whole job (``deadline`` seconds),
and waits for events (a worker's start in nginx's log, an answer to each client), not for
fixed times. It imports nothing heavier than asyncio and the demo backend (and that only
when a job runs: the checks import this module for :data:`STEPS`), so a job starts quickly.
It never reads ``/proc`` (the sandbox has none, so nginx cannot reach this process's pipes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploylab.balancer.backend import DemoBackend

__all__ = ["STEPS", "main", "main_config", "normalise_step", "run_one", "serve"]

#: The commands a learner's change plan may use, and what each does to the master process.
#: ``systemctl``/``service`` forms do what Debian's nginx unit does (stop = graceful quit).
STEPS = {
    "nginx -t": "test",
    "nginx -s reload": "reload",
    "nginx -s quit": "quit",
    "nginx -s stop": "stop",
    "nginx -s reopen": "reopen",
    "nginx": "start",
    "systemctl reload nginx": "reload",
    "systemctl start nginx": "start",
    "systemctl stop nginx": "quit",
    "systemctl restart nginx": "restart",
    "service nginx reload": "reload",
    "service nginx start": "start",
    "service nginx stop": "quit",
    "service nginx restart": "restart",
}
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: Bytes of an answer the clients keep (the apps' answers are a few bytes).
MAX_ANSWER_BYTES = 64 * 1024
#: Requests the change traffic may send in all (it also stops at the job's deadline).
MAX_TRAFFIC_REQUESTS = 3000
#: Answers each client of the change traffic gets before the change is applied, and after
#: the learner's steps are done (requests begun after them): traffic is flowing when the
#: steps start and still flows once they end, counted in requests rather than waited for.
TRAFFIC_BEFORE, TRAFFIC_AFTER = 3, 3
#: Seconds each client of the change traffic waits between two of its requests, unless the
#: job says otherwise (``change["pause"]``): a long pause starves the clients, as a loaded
#: machine can, so that only :meth:`_Job._change`'s own request can catch a restart's gap.
TRAFFIC_PAUSE = 0.002
_LEVEL = re.compile(r"\[(emerg|alert|crit|error)\] (?:\d+#\d+: )?(.*)")


def normalise_step(step: str) -> str | None:
    """The :data:`STEPS` key ``step`` stands for (spaces and a leading ``sudo`` ignored),
    or ``None`` if it is not one.

    >>> normalise_step("  sudo nginx   -s reload ")
    'nginx -s reload'
    >>> normalise_step("kill -HUP 1") is None
    True
    """
    words = step.split()
    if words[:1] == ["sudo"]:
        words = words[1:]
    if words[:1] == ["/usr/sbin/nginx"]:
        words[0] = "nginx"
    text = " ".join(words)
    return text if text in STEPS else None


def main_config(prefix: str | Path) -> str:
    """The main context around the learner's ``site.conf`` (what ``/etc/nginx/nginx.conf``
    is on a server: the learner's text goes where ``conf.d/*.conf`` is included).

    >>> print(main_config("/p"))  # doctest: +ELLIPSIS
    daemon off;
    worker_processes 1;
    pid /p/nginx.pid;
    error_log /p/logs/error.log notice;
    events {
        worker_connections 256;
    }
    http {
        access_log off;
        client_body_temp_path /p/temp/client_body;
    ...
        include /p/site.conf;
    }
    <BLANKLINE>
    """
    prefix = Path(prefix)
    temp = "".join(f"    {kind}_temp_path {prefix / 'temp' / kind};\n" for kind in TEMP_PATHS)
    return (
        f"daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'logs' / 'error.log'} notice;\n"
        "events {\n    worker_connections 256;\n}\n"
        f"http {{\n    access_log off;\n{temp}    include {prefix / 'site.conf'};\n}}\n"
    )


def first_error(text: str) -> str:
    """nginx's first ``[emerg]``/``[alert]``/``[crit]``/``[error]`` message in ``text``.

    >>> first_error('2026/12/01 [emerg] 5#5: unknown directive "x" in /p/site.conf:1\\nnginx: test failed')
    '[emerg] unknown directive "x" in /p/site.conf:1'
    """
    for line in text.splitlines():
        match = _LEVEL.search(line)
        if match:
            return f"[{match.group(1)}] {match.group(2).strip()}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else ""


class _Nginx:
    """The learner's nginx: files in ``prefix``, one master process driven by signals."""

    def __init__(self, prefix: Path, binary: str) -> None:
        self.prefix = prefix
        self.binary = binary
        self.config = prefix / "nginx.conf"
        self.log = prefix / "logs" / "error.log"
        self.process: subprocess.Popen | None = None
        self.workers: set[int] = set()
        self._log_offset = 0
        for folder in ("logs", "temp", *(f"temp/{kind}" for kind in TEMP_PATHS)):
            (prefix / folder).mkdir(parents=True, exist_ok=True)
        self.config.write_text(main_config(prefix))
        self.log.touch()

    def install(self, site: str) -> None:
        (self.prefix / "site.conf").write_text(site)

    async def test(self, site_file: str = "site.conf") -> tuple[bool, str]:
        """``nginx -t`` on the main config (including ``site_file``), without blocking the
        event loop: the change traffic keeps flowing while a learner's ``nginx -t`` runs,
        and a job's two files are tested at once."""
        config = self.config
        if site_file != "site.conf":
            config = self.prefix / "nginx-candidate.conf"
            config.write_text(
                main_config(self.prefix).replace(
                    str(self.prefix / "site.conf"), str(self.prefix / site_file)
                )
            )
        process = await asyncio.create_subprocess_exec(
            *(self.binary, "-t", "-q", "-e", "stderr", "-p", str(self.prefix), "-c", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, errors = await asyncio.wait_for(process.communicate(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return False, "nginx -t did not finish within 5 s"
        return process.returncode == 0, first_error(errors.decode("utf-8", "replace"))

    def _new_log(self) -> str:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self._log_offset)
                data = handle.read(1 << 20)
        except OSError:
            return ""
        self._log_offset += len(data)
        return data.decode("utf-8", "replace")

    def log_tail(self, lines: int = 30) -> list[str]:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        return [line[:300] for line in text.splitlines()[-lines:]]

    async def _wait_for(self, *, started: bool, timeout: float) -> tuple[bool, str]:
        """Read the log until new workers start (True) or an error / exit (False)."""
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            seen += self._new_log()
            new_workers = {int(pid) for pid in re.findall(r"start worker process (\d+)", seen)}
            if new_workers:
                self.workers |= new_workers
                return True, ""
            error = first_error(seen)
            if error.startswith("[emerg]") or error.startswith("[alert]"):
                return False, error
            if started and self.process is not None and self.process.poll() is not None:
                return False, first_error(
                    seen
                ) or f"nginx exited with status {self.process.returncode}"
            await asyncio.sleep(0.01)
        return False, "nginx did not start its worker within the time limit"

    async def start(self) -> tuple[bool, str]:
        if self.running():
            return False, "[emerg] nginx is already running (bind() failed: address already in use)"
        self._new_log()
        self.process = subprocess.Popen(
            [self.binary, "-e", str(self.log), "-p", str(self.prefix), "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers = set()
        ok, message = await self._wait_for(started=True, timeout=4)
        if not ok:
            self.kill()
        return ok, message

    def running(self) -> bool:
        return self.master() is not None

    def master(self) -> subprocess.Popen | None:
        """The nginx master process while it runs, else ``None``."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process

    async def reload(self) -> tuple[bool, str]:
        master = self.master()
        if master is None:
            return False, "[error] nginx is not running (no master process to signal)"
        old = set(self.workers)
        self._new_log()
        os.kill(master.pid, signal.SIGHUP)
        self.workers = set()
        ok, message = await self._wait_for(started=True, timeout=4)
        if not ok:
            self.workers = old
            return False, message
        # Old workers close their listening sockets and exit once idle; wait for that so
        # that later connections all meet the new configuration.
        deadline = time.monotonic() + 2
        seen = ""
        while time.monotonic() < deadline:
            seen += self._new_log()
            exited = {int(pid) for pid in re.findall(r"worker process (\d+) exited", seen)}
            if old <= exited:
                break
            await asyncio.sleep(0.01)
        return True, ""

    async def signal_and_wait(self, signal_number: int) -> tuple[bool, str]:
        master = self.master()
        if master is None:
            return False, "[error] nginx is not running (no master process to signal)"
        os.kill(master.pid, signal_number)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and master.poll() is None:
            await asyncio.sleep(0.01)
        if master.poll() is None:
            self.kill()
        self.kill()  # workers left behind, if any
        return True, ""

    def kill(self) -> None:
        """Stop the master and its workers at once (their process group, by the master's PID)."""
        if self.process is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.process.wait(timeout=2)


async def _request(request: dict, listen: tuple[str, int], timeout: float) -> dict:
    """One HTTP/1.1 request on a new connection from ``request["client"]``."""
    lines = [f"GET {request['path']} HTTP/1.1", f"Host: {request['host']}"]
    if request.get("forwarded_for"):
        lines.append(f"X-Forwarded-For: {request['forwarded_for']}")
    lines += ["User-Agent: deploylab-nginx-lab", "Connection: close", "", ""]
    outcome: dict = {"status": None, "error": None, "answer": None}
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(listen[0], listen[1], local_addr=(request["client"], 0)),
            timeout,
        )
        writer.write("\r\n".join(lines).encode("latin-1"))
        data = await asyncio.wait_for(reader.read(MAX_ANSWER_BYTES), timeout)
        while data and len(data) < MAX_ANSWER_BYTES:
            more = await asyncio.wait_for(reader.read(MAX_ANSWER_BYTES - len(data)), timeout)
            if not more:
                break
            data += more
    except ConnectionRefusedError:
        outcome["error"] = "refused"
        return outcome
    except (ConnectionResetError, BrokenPipeError):
        outcome["error"] = "reset"
        return outcome
    except TimeoutError:
        outcome["error"] = "timeout"
        return outcome
    except OSError as error:
        outcome["error"] = f"os error {error.errno}"
        return outcome
    finally:
        if writer is not None:
            writer.close()
    head = data.partition(b"\r\n\r\n")[0]
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        outcome["error"] = "no HTTP answer"
        return outcome
    outcome["status"] = int(status_line[1])
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-backend":
            outcome["answer"] = value.strip().decode("latin-1")[:64]
    return outcome


class _Job:
    def __init__(self, job: dict) -> None:
        self.job = job
        self.started_at = time.monotonic()
        self.deadline = self.started_at + float(job.get("deadline", 8))
        self.listen = (job["listen"][0], int(job["listen"][1]))
        self.records: list[dict] = []
        self.apps: list[DemoBackend] = []
        self.result: dict = {
            "interfaces": sorted(name for _, name in socket.if_nameindex()),
            "config_test": None,
            "change_test": None,
            "started": False,
            "start_error": "",
            "listening": False,
            "requests": [],
            "change": None,
            "error_log": [],
            # Seconds each phase took (apps, test, start, requests, change, close): where a
            # job's time goes, for the lab's benchmark (``deploylab bench nginx-lab``).
            "phases": {},
        }
        self._phase_started = self.started_at

    def phase(self, name: str) -> None:
        """Record that phase ``name`` ends now (it began where the previous one ended)."""
        now = time.monotonic()
        self.result["phases"][name] = round(now - self._phase_started, 4)
        self._phase_started = now

    def remaining(self, at_most: float) -> float:
        return max(0.05, min(at_most, self.deadline - time.monotonic()))

    async def run(self, nginx: _Nginx) -> None:
        from deploylab.balancer.backend import DemoBackend

        self.apps = [
            DemoBackend(int(app["port"]), app["host"], app["name"], record=self.records)
            for app in self.job["backends"]
        ]
        await asyncio.gather(*(app.start() for app in self.apps))
        self.phase("apps")
        nginx.install(self.job["site"])
        change = self.job.get("change")
        files = ["site.conf"]
        if change is not None:
            (nginx.prefix / "site-next.conf").write_text(change["site"])
            files.append("site-next.conf")
        tested = await asyncio.gather(*(nginx.test(name) for name in files))
        ok, message = tested[0]
        self.result["config_test"] = {"ok": ok, "message": message}
        if change is not None:
            ok_next, message_next = tested[1]
            self.result["change_test"] = {"ok": ok_next, "message": message_next}
            ok = ok and ok_next
        self.phase("test")
        if not ok:
            return
        started, message = await nginx.start()
        self.result["started"], self.result["start_error"] = started, message
        if not started:
            return
        self.result["listening"] = await self._listening()
        self.phase("start")
        for request in self.job.get("requests", []):
            if time.monotonic() >= self.deadline:
                break
            self.result["requests"].append(await self._observed(request))
        self.phase("requests")
        if change is not None:
            self.result["change"] = await self._change(nginx, change)
            self.phase("change")

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(*self.listen), self.remaining(1)
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        return True

    async def _observed(self, request: dict) -> dict:
        before = len(self.records)
        outcome = await _request(request, self.listen, self.remaining(2))
        return {**request, **outcome, "seen": self.records[before:][-4:]}

    async def _change(self, nginx: _Nginx, change: dict) -> dict:
        counts = {"sent": 0, "failed": 0}
        failures: dict[str, int] = {}
        stop = asyncio.Event()
        answered = asyncio.Event()
        traffic = change["traffic"]
        pause = float(change.get("pause", TRAFFIC_PAUSE))
        # Per client: requests begun and requests finished (each client sends one at a time).
        begun = [0] * len(traffic)
        finished = [0] * len(traffic)

        async def send(request: dict) -> None:
            """One request of the traffic, counted (sent, and failed with its reason)."""
            counts["sent"] += 1
            outcome = await _request(request, self.listen, self.remaining(1))
            failure = outcome["error"] or (
                None if outcome["status"] == 200 else f"status {outcome['status']}"
            )
            if failure:
                counts["failed"] += 1
                failures[failure] = failures.get(failure, 0) + 1

        async def client(number: int, request: dict) -> None:
            while not stop.is_set() and counts["sent"] < MAX_TRAFFIC_REQUESTS:
                if time.monotonic() >= self.deadline:
                    return
                begun[number] += 1
                await send(request)
                finished[number] += 1
                answered.set()
                await asyncio.sleep(pause)

        async def while_nginx_is_down() -> None:
            """nginx is stopped between two steps (a stop then a start instead of a reload):
            the traffic keeps coming, so one request is sent now. The clients alone could
            miss that gap on a loaded machine (one event loop runs them and the steps), and a
            restart would then pass as a reload."""
            if not nginx.running() and counts["sent"] < MAX_TRAFFIC_REQUESTS:
                await send(traffic[0])

        async def every_client_finished(targets: list[int]) -> None:
            """Until each client has finished its request number ``targets[i]`` (or time is up)."""
            while any(done < target for done, target in zip(finished, targets, strict=True)):
                if time.monotonic() >= self.deadline or all(task.done() for task in clients):
                    return
                answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), self.remaining(1))

        clients = [
            asyncio.ensure_future(client(number, request)) for number, request in enumerate(traffic)
        ]
        # Traffic flows before the change (every client has had its answers) ...
        await every_client_finished([TRAFFIC_BEFORE] * len(traffic))
        nginx.install(change["site"])
        steps = []
        for step in change["steps"]:
            ok, message = await self._step(nginx, step, while_nginx_is_down)
            steps.append({"step": step, "ok": ok, "message": message})
            if not ok:
                break
            await while_nginx_is_down()
        # ... and after it: every client has sent whole requests once the steps were done.
        await every_client_finished([count + TRAFFIC_AFTER for count in begun])
        stop.set()
        await asyncio.wait(clients, timeout=self.remaining(3))
        for task in clients:
            task.cancel()
        after = []
        for request in change.get("after", []):
            if time.monotonic() >= self.deadline:
                break
            after.append(await self._observed(request))
        return {
            **counts,
            "failures": failures,
            "steps": steps,
            "after": after,
            "running": nginx.running(),
        }

    async def _step(
        self, nginx: _Nginx, step: str, while_down: Callable[[], Awaitable[None]]
    ) -> tuple[bool, str]:
        """Carry out one of the learner's commands; ``while_down`` runs where a restart has
        stopped nginx and not yet started it."""
        action = STEPS.get(normalise_step(step) or "")
        if action == "test":
            return await nginx.test()
        if action == "reload":
            return await nginx.reload()
        if action == "start":
            return await nginx.start()
        if action == "quit":
            return await nginx.signal_and_wait(signal.SIGQUIT)
        if action == "stop":
            return await nginx.signal_and_wait(signal.SIGTERM)
        if action == "restart":
            await nginx.signal_and_wait(signal.SIGQUIT)
            await while_down()
            return await nginx.start()
        if action == "reopen":
            master = nginx.master()
            if master is None:
                return False, "[error] nginx is not running (no master process to signal)"
            os.kill(master.pid, signal.SIGUSR1)
            return True, ""
        return False, "not a command of this lab"

    async def close(self, nginx: _Nginx) -> None:
        nginx.kill()
        for app in self.apps:
            with contextlib.suppress(Exception):
                await app.stop()
        self.result["error_log"] = nginx.log_tail()
        self.phase("close")
        self.result["seconds"] = round(time.monotonic() - self.started_at, 3)


async def _run(job: dict) -> dict:
    from deploylab.nginx import find_nginx

    nginx = _Nginx(Path(job["prefix"]), find_nginx())
    runner = _Job(job)
    try:
        await asyncio.wait_for(runner.run(nginx), max(0.1, runner.deadline - time.monotonic()))
    except TimeoutError:
        runner.result["timed_out"] = True
    finally:
        await runner.close(nginx)
    return runner.result


def run_one(job: dict) -> str:
    """Run ``job``; the line to print: its token followed by the result as JSON."""
    token = str(job.get("token", ""))
    try:
        result = asyncio.run(_run(job))
    except Exception as error:  # reported, so the checker can say "grader problem"
        result = {"harness_error": f"{type(error).__name__}: {error}"[:500]}
    return token + json.dumps(result, separators=(",", ":")) + "\n"


def serve() -> int:
    """Print ``ready``, then run each job read as one JSON line on stdin in a fresh prefix
    under ``/tmp`` (the sandbox's private tmpfs), answering one line each, until EOF.

    The demo apps' module is loaded before ``ready``, while the session warms up, not in
    the first job."""
    import deploylab.balancer.backend  # noqa: F401

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for number, line in enumerate(sys.stdin, start=1):
        job = json.loads(line)
        prefix = Path(tempfile.gettempdir()) / "nginx-lab" / f"job-{number}"
        prefix.mkdir(parents=True)
        job["prefix"] = str(prefix)
        answer = run_one(job)
        shutil.rmtree(prefix, ignore_errors=True)
        sys.stdout.write(answer)
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``--serve``: run jobs until EOF (the sandboxed session); otherwise read one job on
    stdin and print ``TOKEN`` + the result as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    sys.stdout.write(run_one(json.loads(sys.stdin.read(4 << 20))))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
