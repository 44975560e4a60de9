"""The shared classroom environment under ``/opt/deploylab-classroom``: a virtual environment
made from Debian's ``/usr/bin/python3`` holding JupyterHub, the authenticator, the idle culler,
JupyterLab, nbgrader and deploylab itself (a copy, not an editable link into a checkout that
students must not read), and configurable-http-proxy from npm.

Installing is idempotent: a second run only reinstalls deploylab when its sources changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from deploylab.classroom.layout import DEFAULT_PREFIX, ClassroomError
from deploylab.nbgrader_roles import patch_validate_message

__all__ = ["HUB_REQUIREMENTS", "PROXY_PACKAGE", "install_environment", "proxy_command"]

#: What the hub needs besides deploylab (whose own dependencies bring JupyterLab and nbgrader).
HUB_REQUIREMENTS = (
    "jupyterhub>=6.1,<7",
    "jupyterhub-firstuseauthenticator>=1.1,<2",
    "jupyterhub-idle-culler>=2,<3",
)
#: The npm package of the proxy JupyterHub drives (checked here with 5.3 on Node.js 20).
PROXY_PACKAGE = "configurable-http-proxy@5"
#: A Python every account can read and execute (one under /root cannot be).
SYSTEM_PYTHON = Path("/usr/bin/python3")


def project_root() -> Path:
    """The deploylab checkout this code runs from (it has pyproject.toml and lessons/)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file():
        raise ClassroomError(
            f"{root} is not a deploylab checkout; run 'deploylab classroom setup' from a clone"
        )
    return root


def source_digest(root: Path) -> str:
    """A digest of what goes into the deploylab wheel, to skip reinstalling an unchanged copy."""
    digest = hashlib.sha256()
    paths = [root / "pyproject.toml", *sorted((root / "src" / "deploylab").rglob("*"))]
    for path in paths:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def proxy_command(prefix: Path = DEFAULT_PREFIX) -> Path:
    """The configurable-http-proxy executable installed under ``prefix``."""
    return prefix / "node" / "node_modules" / ".bin" / "configurable-http-proxy"


def _run(command: list[str], what: str) -> None:
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise ClassroomError(
            f"{what} failed (exit {completed.returncode}): {' '.join(command)}\n"
            f"{(completed.stderr or completed.stdout)[-2000:]}"
        )


def install_environment(prefix: Path = DEFAULT_PREFIX, *, log=print) -> Path:
    """Make (or update) the shared environment under ``prefix``; returns its venv directory.

    Needs root (it writes under /opt), Debian's python3-venv and Node.js with npm.
    """
    if os.geteuid() != 0:
        raise ClassroomError("installing the classroom environment needs root (it writes /opt)")
    if not SYSTEM_PYTHON.is_file():
        raise ClassroomError(f"{SYSTEM_PYTHON} is missing: apt-get install python3 python3-venv")
    root = project_root()
    venv = prefix / "venv"
    prefix.mkdir(parents=True, exist_ok=True)
    prefix.chmod(0o755)
    os.umask(0o022)
    marker = prefix / "installed.json"
    installed = json.loads(marker.read_text()) if marker.is_file() else {}
    python = venv / "bin" / "python"
    if not python.is_file():
        log(f"classroom: creating {venv} from {SYSTEM_PYTHON}")
        _run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], "python3 -m venv (python3-venv)")
        _run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], "pip upgrade")
        installed = {}
    if installed.get("hub") != list(HUB_REQUIREMENTS):
        log("classroom: installing " + ", ".join(HUB_REQUIREMENTS))
        _run([str(python), "-m", "pip", "install", "-q", *HUB_REQUIREMENTS], "pip install")
        installed["hub"] = list(HUB_REQUIREMENTS)
        marker.write_text(json.dumps(installed))
    digest = source_digest(root)
    if installed.get("deploylab") != digest:
        log(f"classroom: installing deploylab from {root} (a copy students can read)")
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--force-reinstall",
                "--no-deps",
                str(root),
            ],
            "pip install deploylab",
        )
        _run([str(python), "-m", "pip", "install", "-q", str(root)], "pip install dependencies")
        installed["deploylab"] = digest
        marker.write_text(json.dumps(installed))
    if not proxy_command(prefix).is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise ClassroomError("npm is missing: apt-get install nodejs npm")
        log(f"classroom: installing {PROXY_PACKAGE} from npm")
        _run(
            [npm, "install", "--silent", "--prefix", str(prefix / "node"), PROXY_PACKAGE],
            "npm install",
        )
    patch_validate_message(venv)
    write_lab_settings(venv)
    # Build directories pip leaves behind may not be readable by students.
    for path in (venv, prefix / "node"):
        subprocess.run(["chmod", "-R", "a+rX", str(path)], check=False)
    return venv


#: JupyterLab settings every classroom server starts with: no news or update checks (the
#: hub may have no internet, and a class should not see the prompt).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}
}


def write_lab_settings(venv: Path) -> Path:
    """JupyterLab's settings overrides in ``venv`` (see :data:`LAB_SETTINGS`)."""
    overrides = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    overrides.parent.mkdir(parents=True, exist_ok=True)
    overrides.write_text(json.dumps(LAB_SETTINGS, indent=1) + "\n", encoding="utf-8")
    return overrides
