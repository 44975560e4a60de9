"""Bring a classroom up and down: accounts, directories, Jupyter configuration, the hub.

``up`` (root): checks the roster, installs the shared environment if needed, makes one unix
account per row, lays out the course directory and the nbgrader exchange with their owners and
modes, writes the hub's configuration and starts JupyterHub (with configurable-http-proxy and
the idle culler) in the background on 127.0.0.1. ``down`` stops it (the hub stops every
single-user server and the proxy as it exits); ``status`` asks the hub who is running.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from deploylab.classroom import accounts, install, limits
from deploylab.classroom.layout import (
    DEFAULT_PREFIX,
    WORKSPACE,
    Classroom,
    ClassroomError,
    check_course_name,
)
from deploylab.classroom.roster import COLUMNS, Member
from deploylab.loopback import free_port
from deploylab.nbgrader_roles import (
    STUDENT_DISABLED_LAB_PLUGINS,
    STUDENT_DISABLED_SERVER_EXTENSIONS,
)
from deploylab.workspace import HUB_PARTS

__all__ = ["bring_down", "bring_up", "hub_api", "status"]

START_HERE = "lessons/00-start-here.ipynb"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(mode)
    temporary.replace(path)


def _nbgrader_settings(classroom: Classroom, role: str) -> str:
    lines = [
        "# Written by 'deploylab classroom up'; rewritten at every start.",
        "c = get_config()  # noqa: F821",
        f"c.CourseDirectory.course_id = {classroom.course!r}",
        f"c.Exchange.root = {str(classroom.exchange_root)!r}",
        "c.Exchange.path_includes_course = False",
        # Labs are fetched into the workspace, beside the lessons (nbgrader's default '.' is
        # resolved against the server's working directory, the home, not its root).
        "import os",
        f"c.Exchange.assignment_dir = os.path.expanduser('~/{WORKSPACE}')",
    ]
    if role == "student":
        # nbgrader's submit leaves a hand-in world-writable; this one closes it (exchange.py).
        lines.append("c.ExchangeFactory.submit = 'deploylab.classroom.exchange.PrivateSubmit'")
    if role == "instructor":
        lines += [
            # Formgrader works only on a course inside the server's root: the workspace holds
            # a link to the course ('deploylab classroom up' makes it).
            f"c.CourseDirectory.root = os.path.expanduser('~/{WORKSPACE}/course')",
        ]
    return "\n".join(lines) + "\n"


def write_role_configs(classroom: Classroom) -> None:
    """The Jupyter configuration each role's servers load (through JUPYTER_CONFIG_PATH)."""
    for role in ("student", "instructor"):
        directory = classroom.config_dir(role)
        _write(directory / "nbgrader_config.py", _nbgrader_settings(classroom, role))
        if role == "student":
            extensions = dict.fromkeys(STUDENT_DISABLED_SERVER_EXTENSIONS, False)
        else:  # formgrader, without its unsandboxed Autograde button
            extensions = {"deploylab.classroom.formgrader": True}
        server = {"ServerApp": {"jpserver_extensions": extensions}}
        _write(directory / "jupyter_server_config.json", json.dumps(server, indent=1))
        plugins = STUDENT_DISABLED_LAB_PLUGINS if role == "student" else ()
        page = {"disabledExtensions": dict.fromkeys(plugins, True)}
        _write(directory / "labconfig" / "page_config.json", json.dumps(page, indent=1))
        for path in [directory, *directory.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def _roster_text(members: list[Member]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for member in members:
        writer.writerow(
            [member.username, member.role, member.first_name, member.last_name, member.email]
        )
    return out.getvalue()


def lay_out_course(
    classroom: Classroom, source_course: Path, checkout: Path, members: list[Member]
) -> None:
    """The course directory (instructors' group only) and the exchange, with nbgrader's modes.

    Labs and the config are copied from ``source_course`` only where the course does not
    have them yet, so an instructor's edits on the hub are never overwritten.
    """
    instructors = classroom.instructors
    owner = accounts.pwd.getpwnam(instructors[0])
    gid = accounts.ensure_group(classroom.instructors_group)
    for name in instructors:
        accounts._run("usermod", "--append", "--groups", classroom.instructors_group, name)
    state = classroom.state_dir
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)
    classroom.hub_dir.mkdir(exist_ok=True)
    classroom.hub_dir.chmod(0o700)
    # A root-owned, world-readable copy of what students get (lessons, Korean edition,
    # assets), which each workspace is filled from (see deploylab.workspace).
    material = classroom.material_dir
    if material.exists():
        shutil.rmtree(material)
    for part in HUB_PARTS:
        if (checkout / part).is_dir():
            shutil.copytree(
                checkout / part, material / part, ignore=shutil.ignore_patterns(".ipynb_*")
            )
    for path in [material, *material.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # The course: hidden tests and gradebook; instructors only (setgid: files stay in group).
    course = classroom.course_dir
    course.mkdir(exist_ok=True)
    for lab_source in sorted((source_course / "source").iterdir()):
        target = course / "source" / lab_source.name
        if lab_source.is_dir() and not target.exists():
            shutil.copytree(lab_source, target, ignore=shutil.ignore_patterns(".ipynb_*"))
    config_text = (source_course / "nbgrader_config.py").read_text(encoding="utf-8")
    _write(
        course / "nbgrader_config.py",
        config_text
        + "\n# Added by 'deploylab classroom up': this hub's course and exchange.\n"
        + f"c.CourseDirectory.course_id = {classroom.course!r}\n"
        + f"c.Exchange.root = {str(classroom.exchange_root)!r}\n",
    )
    _write(course / "roster.csv", _roster_text(members))  # names and e-mail: instructors only
    for walked, subdirectories, files in os.walk(course):
        os.chown(walked, owner.pw_uid, gid)
        os.chmod(walked, 0o2770)
        for name in files:
            file_path = os.path.join(walked, name)
            if not os.path.islink(file_path):
                os.chown(file_path, owner.pw_uid, gid)
                os.chmod(file_path, 0o660)
        for name in subdirectories:
            if os.path.islink(os.path.join(walked, name)):
                raise ClassroomError(f"{walked}/{name} is a symlink; the course must not hold any")
    # The exchange: root-owned and world-writable with the sticky bit, as nbgrader requires
    # (students create their own entries; nobody can remove or rename another's).
    exchange = classroom.exchange_root
    exchange.mkdir(exist_ok=True)
    os.chown(exchange, 0, 0)
    exchange.chmod(0o1777)
    course_exchange = classroom.exchange_course_dir
    modes = {
        course_exchange: 0o2755,
        course_exchange / "outbound": 0o2755,  # everyone may fetch released labs
        # write-only: no one lists others' hand-ins; sticky: no one renames or removes them
        course_exchange / "inbound": 0o3733,
        course_exchange / "feedback": 0o2711,  # files named by a per-submission secret
    }
    for directory, mode in modes.items():
        directory.mkdir(exist_ok=True)
        os.chown(directory, owner.pw_uid, gid)
        directory.chmod(mode)


def protect_checkout(root: Path, *, log=print) -> None:
    """Make the checkout's ``autograder/`` (masters with solutions and hidden tests) readable
    by its owner only: students share this machine, and the hub's course is a copy."""
    autograder = root / "autograder"
    mode = autograder.stat().st_mode
    if mode & 0o007:
        autograder.chmod(mode & ~0o007)
        log(f"classroom: {autograder} is no longer readable by other users (hidden tests)")


def _hub_config(classroom: Classroom, ports: dict[str, int], token: str, settings: dict) -> str:
    venv = classroom.venv
    admins = set(classroom.instructors)
    users = {member["username"] for member in classroom.members}
    hub = classroom.hub_dir
    culler = [
        str(venv / "bin" / "python"),
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={settings['idle_timeout']}",
        "--cull-every=60",
    ]
    return f'''# Written by 'deploylab classroom up'; rewritten at every start. Do not edit.
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {classroom.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {ports["hub"]}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports["proxy_api"]}"
c.ConfigurableHTTPProxy.command = [{str(install.proxy_command(classroom.prefix))!r}]
c.ConfigurableHTTPProxy.auth_token = {secrets.token_hex(32)!r}
c.JupyterHub.db_url = "sqlite:///{hub / "jupyterhub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{hub / "jupyterhub_cookie_secret"}"
c.JupyterHub.pid_file = "{hub / "jupyterhub.pid"}"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.active_server_limit = {settings["max_running"]}

# Passwords are chosen at first login (no identity provider needed); only roster members.
c.JupyterHub.authenticator_class = "firstuseauthenticator.FirstUseAuthenticator"
c.FirstUseAuthenticator.create_users = False
c.FirstUseAuthenticator.dbm_path = "{hub / "passwords.dbm"}"
c.FirstUseAuthenticator.min_password_length = 8
c.Authenticator.allowed_users = {users!r}
c.Authenticator.admin_users = {admins!r}

c.JupyterHub.spawner_class = "deploylab.classroom.spawner.ClassroomSpawner"
c.ClassroomSpawner.classroom_state = {str(classroom.state_dir)!r}
c.Spawner.cmd = [{str(venv / "bin" / "jupyterhub-singleuser")!r}]
c.Spawner.notebook_dir = "~/deploylab"
c.Spawner.default_url = "/lab/tree/{START_HERE}"
c.Spawner.mem_limit = {settings["memory_bytes"]}
c.Spawner.cpu_limit = {settings["cpus"]}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL"]
c.Spawner.environment = {{"PATH": "{venv / "bin"}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}}

c.JupyterHub.services = [
    {{"name": "idle-culler", "command": {culler!r}}},
    {{"name": "deploylab-classroom", "api_token": {token!r}}},
]
c.JupyterHub.load_roles = [
    {{
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }},
    {{
        "name": "deploylab-classroom",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "proxy"],
        "services": ["deploylab-classroom"],
    }},
]
'''


def _running_pid(classroom: Classroom) -> int | None:
    pid_file = classroom.hub_dir / "jupyterhub.pid"
    try:
        pid = int(pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"jupyterhub" in command else None


def service_token(classroom: Classroom) -> str:
    """The API token of the 'deploylab-classroom' hub service (root only)."""
    return (classroom.hub_dir / "service-token").read_text().strip()


def hub_api(classroom: Classroom, path: str, method: str = "GET", body=None, token=None):
    """Call the hub's REST API through the proxy; returns the decoded JSON (or None)."""
    request = urllib.request.Request(
        f"{classroom.url}/hub/api{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token or service_token(classroom)}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def bring_up(
    members: list[Member],
    *,
    state_dir: Path,
    port: int = 8000,
    course: str = "deploylab",
    prefix: Path = DEFAULT_PREFIX,
    memory: str = "1G",
    cpus: float = 1.0,
    idle_timeout: int = 3600,
    max_running: int = 0,
    log=print,
) -> Classroom:
    """Make accounts, lay out the course and exchange, and start the hub; returns once the hub
    answers on ``http://127.0.0.1:PORT``."""
    if os.geteuid() != 0:
        raise ClassroomError("'classroom up' needs root: it creates unix accounts and the hub")
    check_course_name(course)
    if cpus <= 0:
        raise ClassroomError(f"--cpus {cpus} must be above 0")
    memory_bytes = limits.parse_memory(memory)
    classroom = Classroom(
        state_dir=Path(state_dir).resolve(),
        course=course,
        port=port,
        prefix=prefix,
        members=[{"username": m.username, "role": m.role} for m in members],
    )
    if _running_pid(classroom):
        raise ClassroomError(
            f"a hub is already running for {classroom.state_dir}; 'deploylab classroom down' first"
        )
    install.install_environment(prefix, log=log)
    root = install.project_root()
    protect_checkout(root, log=log)
    for member in members:
        accounts.ensure_account(member, course)
    lay_out_course(classroom, root / "autograder", root, members)
    write_role_configs(classroom)
    classroom.save()
    for member in members:
        accounts.prepare_workspace(member.username, classroom.material_dir)
        if member.is_instructor:
            accounts.link_course(member.username, classroom.course_dir)
    token_file = classroom.hub_dir / "service-token"
    if not token_file.is_file():
        _write(token_file, secrets.token_hex(32), mode=0o600)
    ports = {"hub": free_port(), "proxy_api": free_port()}
    settings = {
        "memory_bytes": memory_bytes,
        "cpus": cpus,
        "idle_timeout": idle_timeout,
        "max_running": max_running,
    }
    config = classroom.hub_dir / "jupyterhub_config.py"
    _write(config, _hub_config(classroom, ports, service_token(classroom), settings), mode=0o600)
    log_file = (classroom.hub_dir / "jupyterhub.log").open("ab")
    environment = {
        "PATH": f"{classroom.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    hub = subprocess.Popen(
        [str(classroom.venv / "bin" / "jupyterhub"), "-f", str(config)],
        cwd=classroom.hub_dir,
        env=environment,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log_file.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            tail = (classroom.hub_dir / "jupyterhub.log").read_text(errors="replace")[-3000:]
            raise ClassroomError(f"JupyterHub exited with status {hub.returncode}:\n{tail}")
        with contextlib.suppress(OSError):
            hub_api(classroom, "/")
            log(f"classroom: hub for {len(members)} people at {classroom.url}/ (pid {hub.pid})")
            return classroom
        time.sleep(0.3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(hub.pid, signal.SIGTERM)
    raise ClassroomError(
        f"JupyterHub did not answer on {classroom.url} within 90 s; see "
        f"{classroom.hub_dir / 'jupyterhub.log'}"
    )


def bring_down(
    classroom: Classroom, *, remove_users: bool = False, log=print, grace: float | None = None
) -> None:
    """Stop the hub (which stops the proxy, the culler and every single-user server) and
    remove the control groups; with ``remove_users``, delete the accounts it created.

    A hub that has not exited after ``grace`` seconds (default: 30 s plus 3 s per member) is
    killed, and so is everything it started that is still running."""
    pid = _running_pid(classroom)
    if pid is not None:
        children = {child: _start_time(child) for child in _children_of(pid)}
        os.kill(pid, signal.SIGTERM)
        # The hub stops every server before it exits: give it time for the whole class (30
        # servers under load took longer than a fixed 30 s, and a killed hub orphaned its
        # proxy and culler).
        if grace is None:
            grace = 30 + 3 * len(classroom.members)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        # The hub starts the proxy and the idle culler in sessions of their own: if it was
        # killed before it stopped them, they would outlive it.
        for child, started in children.items():
            if _start_time(child) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        log(f"classroom: hub (pid {pid}) stopped")
    else:
        log("classroom: no hub running")
    for member in classroom.members:
        limits.remove_groups(member["username"])
        if remove_users and accounts.remove_account(member["username"]):
            log(f"classroom: removed account {member['username']}")


def _children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` now (from ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), to tell it from a later process that
    got the same number; None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def status(classroom: Classroom) -> list[dict]:
    """Each member with their role and whether their server runs (from the hub's API)."""
    if _running_pid(classroom) is None:
        raise ClassroomError(f"no hub is running for {classroom.state_dir}")
    users = {user["name"]: user for user in hub_api(classroom, "/users")}
    rows = []
    for member in classroom.members:
        user = users.get(member["username"], {})
        server = (user.get("servers") or {}).get("", {})
        rows.append(
            {
                "username": member["username"],
                "role": member["role"],
                "server": "ready" if server.get("ready") else ("starting" if server else "-"),
                "last_activity": user.get("last_activity") or "-",
                "memory": limits.group_usage(member["username"]).get("memory"),
            }
        )
    return rows
