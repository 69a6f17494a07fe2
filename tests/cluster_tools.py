"""Helpers for tests that start real processes: find rank processes, wait for them to go."""
import time

import psutil

RANK_MODULE = "parallax_nb.runtime.rank"
SERVER_MODULE = "parallax_nb.runtime.server"


def rank_processes(module=RANK_MODULE):
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if module in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until_gone(pids, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and
                 psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def wait_for(condition, timeout=60.0, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def server_processes():
    return rank_processes(SERVER_MODULE)
