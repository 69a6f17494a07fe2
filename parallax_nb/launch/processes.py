"""Ending a process the launch layer started (a rank, a server, a spare) and its children."""
from __future__ import annotations

import os
import signal
import subprocess

GRACE_SECONDS = 3.0


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
