"""Fault-test tools: a job runs its own local Ray cluster under a private RAY_TMPDIR, so a test
can find and kill exactly that cluster's processes without touching any other Ray."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def processes(ray_tmpdir: str, title: str = "") -> list[int]:
    """Pids whose environment carries this RAY_TMPDIR (every process of that cluster inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"RAY_TMPDIR={ray_tmpdir}".encode() in environ and cmdline.startswith(title):
            found.append(int(entry.name))
    return found


def kill_processes(ray_tmpdir: str, sig: int, title: str = "") -> int:
    pids = processes(ray_tmpdir, title)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return len(pids)


def isolated_env(ray_tmpdir: str) -> dict[str, str]:
    return {**os.environ, "RAY_TMPDIR": ray_tmpdir, "RAY_ADDRESS": ""}


def wait_until(condition, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError("the job ended, or timed out, before the fault could be injected")
