"""Starting and stopping the grid's daemons: detached, with a pid file and a log in the run dir."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence


class StartError(RuntimeError):
    """A daemon did not come up; the message names it and points at its log."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); treat it as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_pid(pid_file: str) -> int | None:
    """The live process a pid file names; None if it is gone or the pid now belongs to another
    process (the file holds the start time too, so a pid reused after a reboot is not trusted)."""
    try:
        with open(pid_file) as f:
            pid_text, _, started = f.read().strip().partition(" ")
            pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if not pid_alive(pid) or (started and _start_time(pid) != started):
        return None
    return pid


def start(
    cmd: Sequence[str], pid_file: str, log_file: str, env: dict[str, str] | None = None, cwd: str | None = None
) -> int:
    """Starts cmd in its own session unless the pid file names a live process; returns the pid."""
    pid = read_pid(pid_file)
    if pid:
        return pid
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    with open(pid_file, "w") as f:
        f.write(f"{proc.pid} {_start_time(proc.pid) or ''}")
    return proc.pid


def stop(pid_file: str, timeout: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stops the process of a pid file: sig, then SIGKILL after timeout. True if one was running."""
    pid = read_pid(pid_file)
    if pid is None:
        _remove(pid_file)
        return False
    terminate(pid, timeout, sig)
    _remove(pid_file)
    return True


def terminate(pid: int, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _ancestors() -> set[int]:
    """This process and its parents: the shell or tool running `down` is never swept."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def processes_under(path: str) -> list[int]:
    """Pids of this user whose command line names a file inside path (path + "/"): whatever a
    run directory started that is still running, such as a server IceGrid gave a config there."""
    found = []
    skip = _ancestors()
    inside = path.rstrip("/") + "/"
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
        except OSError:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if inside in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    check: Callable[[], bool], what: str, timeout: float, log_file: str | None = None, pid_file: str | None = None
) -> None:
    """Polls check until it is true; fails with the tail of the log if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure of a probe just means "not yet"
            pass
        if pid_file and read_pid(pid_file) is None:
            break
        time.sleep(0.1)
    tail = ""
    if log_file and os.path.exists(log_file):
        with open(log_file, errors="replace") as f:
            tail = "".join(f.readlines()[-15:])
    raise StartError(f"{what} did not come up within {timeout:.0f}s (log: {log_file})\n{tail}")
