"""Helpers for tests that start real processes: find what a run or a cluster started, wait
for it to go. Scoped to the test's own run or cluster, so another suite running on the same
machine cannot make a check fail (or pass)."""
import os
import time

import psutil


def run_processes(run_id):
    """Live rank and server processes of one run (their command lines, or for a process
    started warm its working directory, name the run's work dirs)."""
    tag = f"parallax-{run_id}-"
    found = []
    for process in psutil.process_iter(["cmdline", "status", "cwd"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and \
                    tag in " ".join(process.info["cmdline"] or []) + (process.info["cwd"] or ""):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def is_spare(process):
    """An idle spare a worker keeps for its next run (Config.warm_start)."""
    try:
        return "parallax-warm-" in process.cwd()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def cluster_children(cluster, spares=False):
    """Live processes started below the cluster's Dask workers (ranks, servers, and with
    ``spares`` the idle spares kept for the next run)."""
    found = []
    for pid in cluster.client.run(os.getpid).values():
        try:
            found += [c for c in psutil.Process(pid).children(recursive=True)
                      if c.status() != psutil.STATUS_ZOMBIE and (spares or not is_spare(c))]
        except psutil.NoSuchProcess:
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
