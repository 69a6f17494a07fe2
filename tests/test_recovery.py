"""Automatic recovery (issue 17, item 1): kill -9 a rank, a parameter server or a Dask worker
mid-run with max_restarts=1; the run finishes, reports one restart, and its weights equal an
uninterrupted run's; nothing is left behind."""
import glob
import os
import signal
import tempfile

import numpy as np
import pytest

import parallax_nb as px
import programs
from cluster_tools import cluster_children, run_processes, wait_for, wait_until_gone

pytestmark = pytest.mark.timeout(400)
TMP = tempfile.gettempdir()
STEPS = 40


@pytest.fixture(scope="module")
def cluster():
    # 3 workers, runs on 2: after a worker is lost the third takes its place (same ranks)
    with px.connect(local=3) as cluster:
        yield cluster
        assert wait_until_gone([p.pid for p in cluster_children(cluster)]) == []


def two_hosts(cluster):
    """Worker 0 alone on host0, the others on host1: server 1 is a process of its own."""
    workers = sorted({d.worker for d in cluster.devices(refresh=True)})
    cluster.label_hosts({w: "host0" if i == 0 else "host1" for i, w in enumerate(workers)})


def config(directory, **changes):
    return px.Config(mode="HYBRID", steps=STEPS, batch_size=4, partitions=2,
                     placement={"emb/embeddings:0": "ps"}, checkpoint_dir=str(directory),
                     checkpoint_every_steps=5, max_restarts=1, **changes)


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory):
    two_hosts(cluster)
    run = px.train(programs.slow_program(delay=0.02), cluster=cluster, select=2,
                   config=config(tmp_path_factory.mktemp("straight")))
    return run.result(timeout=300)


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def kill_mid_run(cluster, run, victim):
    assert wait_for(lambda: len(run.metrics) and run.metrics["step"].max() >= 12, timeout=200)
    if victim == "rank":
        os.kill(run.pids[1], signal.SIGKILL)
    elif victim == "server":
        os.kill(run.servers_started[1]["pid"], signal.SIGKILL)
    else:
        worker = run.slots[1].device.worker
        os.kill(cluster.client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)


@pytest.mark.parametrize("victim", ["rank", "server", "worker"])
def test_a_run_survives_a_killed_process_and_trains_as_if_nothing_happened(
        cluster, uninterrupted, tmp_path, victim):
    two_hosts(cluster)
    ports_before = client_ports()
    run = px.train(programs.slow_program(delay=0.02), cluster=cluster, select=2,
                   config=config(tmp_path))
    assert wait_for(lambda: run.servers_started.get(1), timeout=200)
    kill_mid_run(cluster, run, victim)
    trained = run.result(timeout=300)
    assert run.status == "finished" and len(run.restarts) == 1
    restart = run.restarts[0]
    what = {"rank": r"rank 1 on host host1 failed: the process was killed by SIGKILL",
            "server": r"parameter server 1 \(127\.0\.0\.1:\d+\) on host host1 failed: the "
                      r"process was killed by SIGKILL",
            "worker": r"(rank 1|parameter server 1 \S+) on host host1 failed: Dask worker "
                      r"\S+ left the cluster"}[victim]
    assert __import__("re").fullmatch(what, restart["lost"]), restart["lost"]
    assert restart["ranks"] == 2 and restart["resumed_from"] % 5 == 0
    assert 0 <= restart["steps_lost"] < 5 + 3 and restart["seconds"] > 0
    notes = [n for n in run.notes if n.startswith("restart 1 of at most 1: ")]
    assert len(notes) == 1 and f"resumed from step {restart['resumed_from']}" in notes[0]
    assert "1 restart(s): #1 lost" in str(run.report())
    # every step once in the metrics, the redone ones from the second attempt
    frame = run.metrics
    assert sorted(frame[frame["rank"] == 0]["step"]) == list(range(1, STEPS + 1))
    assert set(frame[frame["step"] > restart["resumed_from"]]["attempt"]) == {1}
    for name in uninterrupted:
        assert relative_error(trained[name], uninterrupted[name]) < 1e-6, name
    # nothing left: processes, work directories, temporary checkpoint data
    assert wait_until_gone([p.pid for p in run_processes(run.run_id)]) == []
    assert wait_for(lambda: not glob.glob(os.path.join(TMP, f"parallax-{run.run_id}-*")), 10)
    assert not [p for p in os.listdir(tmp_path) if "temp" in p]
    assert client_ports() == ports_before     # both attempts' rendezvous closed


def client_ports():
    import psutil

    return {c.laddr for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN}


def test_without_a_checkpoint_dir_a_lost_rank_fails_the_run_saying_what_would_recover(cluster):
    two_hosts(cluster)
    run = px.train(programs.slow_program(delay=0.02), cluster=cluster, select=2,
                   config=px.Config(mode="AR", steps=STEPS, batch_size=4))
    assert wait_for(lambda: len(run.metrics) > 4, timeout=200)
    os.kill(run.pids[1], signal.SIGKILL)
    with pytest.raises(px.RankError, match=r"^rank 1 on host host1 failed: the process was "
                                           r"killed by SIGKILL \(not recovered: with Config\("
                                           r"checkpoint_dir=\.\.\.\) the run would have "
                                           r"restarted from its last checkpoint; max_restarts "
                                           r"sets how often\)"):
        run.wait(timeout=120)
    assert run.restarts == [] and run.status == "failed"


def test_with_no_device_to_replace_a_lost_worker_the_run_goes_on_with_fewer_ranks(tmp_path):
    """A worker leaves for good (closed with its nanny: no replacement comes): the run
    resumes on the one rank left, which reads dataset_fn(0, 1) from the checkpoint's step;
    every step once."""
    with px.connect(local=2) as small:
        run = px.train(programs.slow_program(delay=0.02), cluster=small, select=2,
                       config=px.Config(mode="AR", steps=STEPS, batch_size=4,
                                        checkpoint_dir=str(tmp_path), checkpoint_every_steps=5))
        assert wait_for(lambda: len(run.metrics) and run.metrics["step"].max() >= 12, 200)
        worker = run.slots[1].device.worker
        local = small._owned_cluster        # its LocalCluster: drop the worker's spec, so
        name = next(n for n, w in local.workers.items() if w.worker_address == worker)
        del local.worker_spec[name]         # no nanny brings it back
        local.sync(local._correct_state)
        run.wait(timeout=300)
        assert run.status == "finished" and [r["ranks"] for r in run.restarts] == [1]
        resumed = run.restarts[0]["resumed_from"]
        frame = run.metrics
        assert sorted(frame[frame["rank"] == 0]["step"]) == list(range(1, STEPS + 1))
        assert set(frame[frame["step"] > resumed]["rank"]) == {0}
        assert "on 1 rank(s)" in [n for n in run.notes if n.startswith("restart 1")][0]
        assert wait_until_gone([p.pid for p in run_processes(run.run_id)]) == []
