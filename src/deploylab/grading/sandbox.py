"""The bubblewrap sandbox a grading kernel runs in.

A student's kernel gets: a read-only view of the system (``/usr`` and the Python environment it
needs), a fresh ``/tmp`` and ``/dev/shm`` (small tmpfs), its own ``/proc`` (pid namespace: it
sees only its own processes), no network (empty network namespace, loopback only), and one
writable working directory, ``/tmp/work``: the grader's tmpfs scratch (bounded in bytes and
files) when grading as root, else a directory of the sandbox's own size-limited tmpfs, with
the lab's data files read-only in it — either way nothing it writes reaches the host's disk. Nothing else of the host is mounted: not the
course (source notebooks, ``gradebook.db``), not other students' directories, not the grader's
home; its environment is rebuilt from scratch (the grader's variables are not passed on).
Resource limits (address space, CPU seconds, processes, file size, open files) are set with
``prlimit`` inside the sandbox, just before the kernel starts.

Where the host lets root create control groups, each sandbox also gets its own memory and
pids cgroup, which caps all its processes together (rlimits are per process).

Two ways to run, chosen automatically:

* grader is root and bwrap may mount (CI, VMs, privileged containers): bwrap runs privileged
  (no user namespace), builds the mounts, then the kernel is started under a fresh, otherwise
  unused uid/gid (no capabilities, ``no_new_privs``) chosen per run, so the process limit
  counts this sandbox only;
* otherwise: bwrap creates a user namespace and the kernel is uid/gid 65534 (``nobody``)
  inside it.

The kernel talks to the grader over ZeroMQ ``ipc`` sockets (Unix sockets) it binds inside the
sandbox; the grader reaches them through ``/proc/<pid>/root``, so no host directory needs to
be writable for them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from deploylab.grading.cgroups import JOIN_CGROUPS, make_cgroups, own_cgroup, remove_cgroup
from deploylab.grading.errors import SandboxUnavailableError
from deploylab.grading.limits import Limits
from deploylab.grading.scratch import is_scratch_mount, remove_tree, scratch_directory

__all__ = [
    "SandboxHandle",
    "check_available",
    "own_cgroup",
    "prepare",
    "remove_tree",
    "sandbox_environment",
    "scratch_directory",
]

INSTALL_HINT = "apt-get install bubblewrap, or pass --unsafe-no-sandbox"

#: Where unique per-run uids come from when the grader is root: far above any real account
#: (login.defs UID_MAX 60000) and above the usual subordinate-uid ranges of containers.
_RUN_UID_BASE = 2_000_000_000
_RUN_UID_SPAN = 100_000_000

#: The environment a student's kernel sees (nothing of the grader's is passed on).
_BASE_ENVIRONMENT = {
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "USER": "student",
    "LOGNAME": "student",
    "TERM": "dumb",
    "TMPDIR": "/tmp",
    "IPYTHONDIR": "/tmp/.ipython",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
    "MPLBACKEND": "agg",
    "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter",
    "JUPYTER_CONFIG_DIR": "/tmp/.jupyter",
    "JUPYTER_DATA_DIR": "/tmp/.jupyter",
    "JUPYTER_PLATFORM_DIRS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    # Lesson helpers that only show things (deploylab.nginx_lab.try_site) skip their work.
    "DEPLOYLAB_GRADING": "1",
}


@functools.cache
def _bwrap_path() -> str | None:
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/usr/sbin:/bin")


def check_available() -> str:
    """Path of a working bwrap, or raise :class:`SandboxUnavailableError` saying what to do.

    Cheap once probed, and imports nothing heavy (the nginx lab's checker calls it from the
    trusted tests, which never load nbformat).
    """
    path = _bwrap_path()
    if path is None:
        raise SandboxUnavailableError(f"bubblewrap (bwrap) not found: {INSTALL_HINT}")
    if _privileged_mode():
        return path
    problem = _probe(path, privileged=False)
    if problem:
        raise SandboxUnavailableError(
            f"bubblewrap (bwrap) is installed but cannot create a sandbox here: {problem}. "
            "Allow user namespaces (sysctl kernel.unprivileged_userns_clone=1) or grade as root, "
            "or pass --unsafe-no-sandbox"
        )
    return path


@functools.cache
def _probe(bwrap: str, privileged: bool) -> str:
    """Empty if a minimal sandbox starts, otherwise bwrap's complaint."""
    command = [bwrap, *_namespace_options(privileged)]
    command += ["--ro-bind", "/usr", "/usr", *_merged_usr_links()]
    command += ["--proc", "/proc", "--dev", "/dev", "--", "/usr/bin/true"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def _running_as_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _privileged_mode() -> bool:
    """Root, and bwrap may mount without a user namespace (not in an unprivileged container):
    the kernel then runs under a fresh uid of its own. Otherwise: user namespace, uid 65534."""
    bwrap = _bwrap_path()
    return bool(bwrap) and _running_as_root() and not _probe(bwrap, privileged=True)


def _namespace_options(privileged: bool | None = None) -> list[str]:
    if privileged is None:
        privileged = _privileged_mode()
    options = [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--new-session",
        "--die-with-parent",
    ]
    if privileged:
        # Privileged bwrap builds the mounts; the kernel then drops to an unused uid with
        # setpriv (which needs these two capabilities, and gives them up for good).
        options += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        options += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return options


def _merged_usr_links() -> list[str]:
    """Bind or link /bin, /lib… the way the host has them (merged /usr or not)."""
    options: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            options += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            options += ["--ro-bind", str(path), str(path)]
    return options


def sandbox_environment(home: str) -> dict[str, str]:
    """The complete environment of a sandboxed kernel."""
    environment = dict(_BASE_ENVIRONMENT)
    venv_bin = str(Path(sys.prefix) / "bin")
    environment["PATH"] = f"{venv_bin}:/usr/local/bin:/usr/bin:/bin"
    environment["HOME"] = home
    if sys.prefix != sys.base_prefix:
        environment["VIRTUAL_ENV"] = sys.prefix
    return environment


def _package_directory() -> Path:
    import deploylab

    return Path(deploylab.__file__).resolve().parent


#: The kernel's working directory and home, on the sandbox's own size-limited tmpfs.
WORK_DIR = "/tmp/work"
#: Where the kernel binds its ZeroMQ sockets (inside the sandbox; the grader reaches them
#: through ``/proc/<pid>/root``, see :func:`socket_path_from_outside`).
SOCKET_DIR = "/tmp/.kernel"
KERNEL_SOCKET_PREFIX = f"{SOCKET_DIR}/k"


def socket_path_from_outside(pid: int, inside: str) -> str:
    """The host path of ``inside``, a path in the mount namespace of process ``pid``.

    >>> socket_path_from_outside(4242, KERNEL_SOCKET_PREFIX)
    '/proc/4242/root/tmp/.kernel/k'
    """
    return f"/proc/{pid}/root{inside}"


#: Modules every grading kernel needs from deploylab: the kernel side of the trusted tests.
KERNEL_MODULES = ("deploylab.grading.call_loop",)


@functools.cache
def package_files(modules: tuple[str, ...]) -> list[Path]:
    """The deploylab source files that importing ``modules`` (and :data:`KERNEL_MODULES`)
    loads, found by importing them in a fresh interpreter; what a grading kernel may see.

    >>> sorted(path.name for path in package_files(()) if path.suffix == ".py")
    ['__init__.py', '__init__.py', 'call_loop.py', 'plain_data.py']
    """
    wanted = sorted({*KERNEL_MODULES, *modules})
    script = (
        "import importlib, json, sys\n"
        f"for name in {wanted!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items())\n"
        "    if (n == 'deploylab' or n.startswith('deploylab.')) and getattr(m, '__file__', None))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise ValueError(
            f"the lab's setup imports {', '.join(modules)}, which do not import here: "
            f"{done.stderr.strip().splitlines()[-1:] or done.returncode}"
        )
    import importlib.util
    import json

    root = _package_directory()
    files = [Path(os.path.realpath(name)) for name in json.loads(done.stdout)]
    sources = [path for path in files if root in path.parents]
    # Their bytecode too, where it exists: the kernel need not compile them again.
    cached = [Path(importlib.util.cache_from_source(str(path))) for path in sources]
    return sorted([*sources, *(path for path in cached if path.is_file())])


def _package_view(files: list[Path]) -> list[str]:
    """bwrap options that replace the deploylab package by just ``files`` (read-only)."""
    root = _package_directory()
    options = ["--perms", "0755", "--tmpfs", str(root)]
    directories = sorted(
        {parent for path in files for parent in path.parents if root in parent.parents}
    )
    for directory in directories:
        options += ["--perms", "0755", "--dir", str(directory)]
    for path in files:
        options += ["--ro-bind", str(path), str(path)]
    return options


def _python_paths() -> list[Path]:
    """Read-only directories the kernel's Python needs: installation, venv, package sources."""
    import sysconfig

    import deploylab

    candidates = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent]
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            candidates.append(Path(value))
    # deploylab itself (an editable install lives outside site-packages): only the package
    # directory, never the checkout around it (which holds autograder/).
    candidates.append(Path(deploylab.__file__).resolve().parent)
    # The interpreter the venv points at (python -> /path/to/pythonX.Y).
    candidates.append(Path(os.path.realpath(sys.executable)).parent.parent)
    paths: list[Path] = []
    for candidate in candidates:
        resolved = Path(os.path.realpath(candidate))
        under_usr = resolved == Path("/usr") or Path("/usr") in resolved.parents
        if not resolved.is_dir() or resolved == Path("/") or under_usr:
            continue  # /usr is bound as a whole already
        if any(resolved == p or p in resolved.parents for p in paths):
            continue
        paths = [p for p in paths if resolved not in p.parents]
        paths.append(resolved)
    return sorted(paths)


@functools.cache
def _debugpy_directory() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("debugpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(os.path.realpath(spec.origin)).parent


def _forbidden_paths_overlap(paths: list[Path], scratch_dir: Path) -> list[str]:
    """Read-only paths that would expose the scratch directory's neighbours (other students)."""
    problems = []
    for path in paths:
        if path == scratch_dir or path in scratch_dir.parents:
            problems.append(str(path))
    return problems


# --- seccomp -------------------------------------------------------------------------
#: x86_64 system calls a graded notebook never needs and that widen the kernel's attack
#: surface: namespaces and mounts, keyrings, BPF, perf, userfaultfd, io_uring, ptrace and
#: other processes' memory, modules, kexec. They fail with EPERM.
_BLOCKED_SYSCALLS_X86_64 = {
    "ptrace": 101, "syslog": 103, "personality": 135, "pivot_root": 155, "chroot": 161,
    "acct": 163, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
    "perf_event_open": 298, "name_to_handle_at": 303, "open_by_handle_at": 304,
    "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438,
}  # fmt: skip
_CLONE = 56
_CLONE3 = 435  # its flags are out of reach of a filter: ENOSYS makes libc fall back to clone
#: CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_CLONE_NAMESPACE_FLAGS = 0x7E020000


def seccomp_program() -> bytes | None:
    """The classic-BPF seccomp filter bwrap installs for the kernel (x86_64 only, else None)."""
    import platform
    import struct

    if platform.machine() != "x86_64":
        return None
    audit_arch_x86_64 = 0xC000003E
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    load, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    blocked = sorted(_BLOCKED_SYSCALLS_X86_64.values())
    # Layout: [arch check] [nr checks] [clone flag check] ALLOW EPERM ENOSYS
    program: list[tuple[int, int, int, int]] = []
    body = 3 + 1 + len(blocked) + 2 + 2  # instructions before the three returns
    allow_at, eperm_at, enosys_at = body, body + 1, body + 2

    def jump(opcode: int, value: int, true_to: int | None, false_to: int | None) -> None:
        here = len(program)
        true_offset = 0 if true_to is None else true_to - here - 1
        false_offset = 0 if false_to is None else false_to - here - 1
        program.append((opcode, true_offset, false_offset, value))

    program.append((load, 0, 0, 4))  # seccomp_data.arch
    jump(jeq, audit_arch_x86_64, None, allow_at)
    program.append((load, 0, 0, 0))  # seccomp_data.nr
    jump(jge, 0x40000000, eperm_at, None)  # x32 system calls
    for number in blocked:
        jump(jeq, number, eperm_at, None)
    jump(jeq, _CLONE3, enosys_at, None)
    jump(jeq, _CLONE, None, allow_at)
    program.append((load, 0, 0, 16))  # low half of clone's flags argument
    jump(jset, _CLONE_NAMESPACE_FLAGS, eperm_at, allow_at)
    assert len(program) == body
    program += [(ret, 0, 0, allow), (ret, 0, 0, eperm), (ret, 0, 0, enosys)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


@dataclass
class SandboxHandle:
    """One prepared sandbox: wraps the kernel command, knows its environment, cleans up."""

    scratch_dir: Path
    limits: Limits
    extra_binds: list[tuple[str, str]] = field(default_factory=list)
    #: host directories the kernel sees at the same path, read-only (the trusted tests' sockets)
    read_only_binds: list[str] = field(default_factory=list)
    #: the only files of the deploylab package the kernel can import (None: all of it); the
    #: course's reference implementation stays out of reach unless a setup cell needs it
    package_files: list[Path] | None = None
    #: the scratch directory is a tmpfs the grader mounted (bounded in bytes and files): the
    #: kernel works in it; otherwise it works in a tmpfs of its own and sees scratch read-only
    work_on_scratch: bool = False
    #: host files shown read-only at another path (source, destination), e.g. a made-up
    #: ``/etc/hosts`` for the nginx lab's sandbox
    read_only_files: list[tuple[str, str]] = field(default_factory=list)
    #: mount a ``/proc`` of the sandbox's own processes; without it, processes of the same
    #: user cannot reach each other's open files through ``/proc/PID/fd`` (the nginx lab
    #: runs the student's nginx next to the harness that reports on it)
    mount_proc: bool = True
    uid: int | None = None
    _owner: tuple[int, int] | None = None
    _mode: int | None = None
    _seccomp_fd: int | None = None
    #: control groups (memory, pids) the whole sandbox runs in, where the host lets us make them
    cgroups: list[Path] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """Environment for the bwrap process itself (the kernel's is set with --setenv)."""
        environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        if self.cgroups:
            environment["DEPLOYLAB_CGROUPS"] = ":".join(str(path) for path in self.cgroups)
        return environment

    def pass_fds(self) -> tuple[int, ...]:
        """File descriptors the bwrap process must inherit (the seccomp filter)."""
        if self._seccomp_fd is None:
            program = seccomp_program()
            if program is None:
                return ()
            fd = os.memfd_create("deploylab-seccomp", 0)
            os.write(fd, program)
            os.lseek(fd, 0, os.SEEK_SET)
            self._seccomp_fd = fd
        return (self._seccomp_fd,)

    def memory_limit_hit(self) -> bool:
        """Did the sandbox's memory control group kill or refuse something?"""
        for directory in self.cgroups:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    text = (directory / name).read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key in ("oom_kill", "oom") and value.strip() not in ("", "0"):
                        return True
        return False

    def command(self, inner: list[str], connection_file: str | None = None) -> list[str]:
        """``inner`` (the kernel command) wrapped in bwrap + setpriv + prlimit."""
        bwrap = check_available()
        scratch = str(self.scratch_dir)
        options = []
        if self.cgroups:
            # Join the control groups before bwrap starts, so everything it starts is inside.
            options = ["/bin/sh", "-c", JOIN_CGROUPS, "deploylab-sandbox"]
        options += [bwrap, *_namespace_options()]
        options += ["--ro-bind", "/usr", "/usr", *_merged_usr_links()]
        # Made first and traversable: privileged bwrap would create it 0700 for the first
        # file bound into it, leaving the files below unreadable for the sandbox's uid.
        options += ["--perms", "0755", "--dir", "/etc"]
        for etc_file in ("/etc/ld.so.cache", "/etc/localtime", "/etc/mime.types"):
            if os.path.exists(etc_file):
                options += ["--ro-bind", os.path.realpath(etc_file), etc_file]
        for source, destination in self.read_only_files:
            options += ["--ro-bind", source, destination]
        if self.mount_proc:
            options += ["--proc", "/proc"]
        options += ["--dev", "/dev"]
        options += ["--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        options += ["--perms", "1777", "--size", str(min(self.limits.tmp_bytes, 16 * 1024 * 1024))]
        options += ["--tmpfs", "/dev/shm"]
        python_paths = _python_paths()
        overlap = _forbidden_paths_overlap(python_paths, self.scratch_dir)
        if overlap:
            raise SandboxUnavailableError(
                f"the scratch directory {scratch} is inside the Python environment "
                f"({', '.join(overlap)}); put scratch directories elsewhere"
            )
        # bwrap creates missing parents of mount points as 0700 when privileged; make them
        # traversable for the unprivileged kernel.
        parents: set[Path] = set()
        bound = [
            *python_paths,
            self.scratch_dir,
            *(Path(d) for _, d in self.extra_binds),
            *(Path(d) for d in self.read_only_binds),
            *(Path(d) for _, d in self.read_only_files),
        ]
        for path in bound:
            parents.update(p for p in path.parents if p != Path("/"))
        for parent in sorted(parents, key=lambda p: len(p.parts)):
            if str(parent) in ("/usr", "/tmp", "/dev", "/proc") or parent.parts[1:2] == ("usr",):
                continue
            options += ["--perms", "0755", "--dir", str(parent)]
        for path in python_paths:
            options += ["--ro-bind", str(path), str(path)]
        # Grading needs no debugger: an empty debugpy saves ipykernel ~70 ms of imports at
        # every kernel start (it then reports the debugger as unavailable).
        debugpy = _debugpy_directory()
        if debugpy is not None and any(p in debugpy.parents for p in python_paths):
            options += ["--tmpfs", str(debugpy)]
        if self.package_files is not None:
            options += _package_view(self.package_files)
        # The scratch directory (connection file, the lab's data files) is read-only inside:
        # the kernel writes only to its own tmpfs, so nothing it does reaches the host's disk.
        options += ["--ro-bind", scratch, scratch, "--perms", "0777", "--dir", SOCKET_DIR]
        if self.work_on_scratch:
            # A tmpfs the grader mounted with size and file-count limits: the working dir.
            options += ["--bind", scratch, WORK_DIR]
        else:
            # Otherwise the kernel writes only to its own size-limited tmpfs; the lab's data
            # files are read-only in it, and nothing it does reaches the host's disk.
            options += ["--perms", "1777", "--dir", WORK_DIR]
            for data_file in sorted(self.scratch_dir.iterdir()):
                if (
                    data_file.is_file()
                    and not data_file.is_symlink()
                    and data_file.suffix != ".json"
                ):
                    options += ["--ro-bind", str(data_file), f"{WORK_DIR}/{data_file.name}"]
        for source, destination in self.extra_binds:
            options += ["--bind", source, destination]
        for directory in self.read_only_binds:
            options += ["--ro-bind", directory, directory]
        for fd in self.pass_fds():
            options += ["--seccomp", str(fd)]
        options += ["--chdir", WORK_DIR, "--clearenv"]
        for name, value in sandbox_environment(home=WORK_DIR).items():
            options += ["--setenv", name, value]
        options.append("--")
        if self.uid is not None:
            options += [
                "setpriv",
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        limits = self.limits
        options += [
            "prlimit",
            f"--as={limits.memory_bytes}",
            # soft:hard: SIGXCPU at the soft limit names the cause; SIGKILL one second later.
            f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
            f"--nproc={limits.max_processes}",
            f"--fsize={limits.max_file_bytes}",
            f"--nofile={limits.max_open_files}",
            "--core=0",
            "--",
        ]
        if connection_file is not None and self.uid is not None:
            os.chown(connection_file, self.uid, self.uid)
        return options + inner

    def close(self) -> None:
        """Remove the control groups; give the scratch directory back to its owner."""
        if self._seccomp_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._seccomp_fd)
            self._seccomp_fd = None
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
        self.cgroups = []
        if self._owner is None:
            return
        uid, gid = self._owner
        for directory, subdirectories, files in os.walk(self.scratch_dir):
            for name in [*subdirectories, *files]:
                with contextlib.suppress(OSError):
                    os.lchown(os.path.join(directory, name), uid, gid)
        with contextlib.suppress(OSError):
            os.lchown(self.scratch_dir, uid, gid)
        if self._mode is not None:
            # (jupyter_client also sets the sticky bit on the connection file's directory)
            with contextlib.suppress(OSError):
                os.chmod(self.scratch_dir, self._mode)
        self._owner = None


def prepare(scratch_dir: Path, limits: Limits, *, socket_link: Path | None = None) -> SandboxHandle:
    """Make ``scratch_dir`` usable by a sandboxed kernel and return the handle that wraps it.

    ``socket_link`` is a short symlink to ``scratch_dir`` used for the ipc socket paths when
    the scratch path is too long for a Unix socket; it is mounted at the same place inside.
    """
    check_available()
    scratch_dir = Path(os.path.realpath(scratch_dir))
    handle = SandboxHandle(scratch_dir=scratch_dir, limits=limits)
    handle.work_on_scratch = is_scratch_mount(scratch_dir)
    if socket_link is not None:
        handle.extra_binds.append((str(scratch_dir), str(socket_link)))
    if _running_as_root():
        # Where the host allows it, memory and task limits for the sandbox as a whole.
        handle.cgroups = make_cgroups(limits)
    if _privileged_mode():
        handle.uid = _RUN_UID_BASE + secrets.randbelow(_RUN_UID_SPAN)
        status = scratch_dir.stat()
        handle._owner = (status.st_uid, status.st_gid)
        handle._mode = status.st_mode & 0o7777
        for directory, subdirectories, files in os.walk(scratch_dir):
            for name in [*subdirectories, *files]:
                os.lchown(os.path.join(directory, name), handle.uid, handle.uid)
        os.chown(scratch_dir, handle.uid, handle.uid)
        os.chmod(scratch_dir, 0o700)
    return handle
