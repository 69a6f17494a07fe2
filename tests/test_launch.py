"""Horovod ranks on a real LocalCluster (separate processes): AR training, failures, stop."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import parallax_nb as px
import programs
from cluster_tools import (cluster_children, is_spare, run_processes, wait_for,
                           wait_until_gone)
from parallax_nb.cluster import ClusterError, SelectionError
from parallax_nb.launch.warm import SPARES_KEPT
from parallax_nb.runtime.single import train_single_device

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    with px.connect(local=2, slots_per_worker=2) as cluster:
        yield cluster
        assert wait_until_gone([p.pid for p in cluster_children(cluster)]) == []
        cluster.release_spares()
        assert wait_until_gone([p.pid for p in cluster_children(cluster, spares=True)]) == []


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("optimizer_fn", [programs.sgd, programs.adam], ids=["sgd", "adam"])
def test_n_ranks_of_batch_b_equal_one_process_of_batch_n_times_b(cluster, optimizer_fn, ranks):
    """One rank skips Horovod's collectives (the identity there); it must still train exactly
    as plain TensorFlow does."""
    program = programs.keras_embedding_program(optimizer_fn=optimizer_fn)
    run = px.train(program, cluster=cluster, select=ranks,
                   config=px.Config(mode="AR", steps=6, batch_size=4))
    trained = run.result(timeout=120)
    reference, losses = train_single_device(program, steps=6, batch_size=4 * ranks)
    assert list(trained) == list(reference)
    for name in reference:
        assert relative_error(trained[name], reference[name]) < 1e-5, name
    # and training did move the weights
    initial = program.model().get_weights()
    assert relative_error(reference["out/kernel:0"], initial[1]) > 1e-3
    assert len(run.metrics) == 6 * ranks and set(run.metrics["rank"]) == set(range(ranks))
    assert run.status == "finished"


def test_a_rank_exception_names_rank_and_traceback_and_leaves_nothing_running(cluster):
    run = px.train(programs.failing_program(), cluster=cluster, select=2,
                   config=px.Config(mode="AR", steps=5, batch_size=4))
    with pytest.raises(px.RankError) as caught:
        run.wait(timeout=120)
    error = caught.value
    assert error.rank == 1 and error.host == run.slots[1].host
    assert "ValueError: model_fn broke on rank 1" in str(error)
    assert "Traceback" in error.traceback and "failing_model" in error.traceback
    assert run.status == "failed"
    assert wait_until_gone(list(run.pids.values())) == []
    assert run_processes(run.run_id) == []
    # the same cluster runs the next job
    again = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="AR", steps=2, batch_size=4))
    assert again.wait(timeout=120).status == "finished"


def test_a_crashing_rank_is_reported_with_how_it_ended_and_nothing_else(cluster):
    run = px.train(programs.crashing_program(), cluster=cluster, select=2,
                   config=px.Config(mode="AR", steps=5, batch_size=4))
    with pytest.raises(px.RankError, match=r"^rank 0 on host \S+ failed: the process was "
                                           r"killed by SIGKILL") as failed:
        run.wait(timeout=120)
    # its log's start-up noise and warnings are not quoted as if they were the cause
    assert not re.search(r"cuInit|factory|absl|AutoGraph|WARNING", str(failed.value))
    # one clean error in the client; the workers did not log the failure as a task's
    logs = cluster.client.get_worker_logs()
    assert not [m for records in logs.values() for _, m in records if "Compute Failed" in m]
    assert wait_until_gone(list(run.pids.values())) == []


def test_stop_mid_run_ends_every_rank_within_ten_seconds(cluster):
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode="AR", steps=1_000_000, batch_size=4))
    assert wait_for(lambda: len(run.metrics) > 10, timeout=120)
    assert run.status == "running" and not run.done     # a property, like status
    pids = list(run.pids.values())
    started = time.time()
    run.stop(timeout=10)
    assert time.time() - started < 10
    assert run.status == "stopped" and run.done
    assert wait_until_gone(pids, timeout=1) == []
    with pytest.raises(px.RunStopped):
        run.result()


def test_metrics_stream_to_callbacks_while_the_run_goes_on(cluster):
    seen = []
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode="AR", steps=30, batch_size=4))
    run.on_metrics(seen.extend)
    run.wait(timeout=120)
    assert sorted((r["rank"], r["step"]) for r in seen) == \
        [(rank, step) for rank in (0, 1) for step in range(1, 31)]
    assert all(r["examples"] == 4 and r["examples_per_sec"] > 0 for r in seen)
    report = run.report()
    assert report.steps == 30 and report.examples_per_sec > 0
    assert "30 steps" in str(report) and "examples/s" in report._repr_html_()


def test_ranks_get_horovod_topology_of_their_hosts():
    with px.connect(local=2, simulate_hosts=2) as two_hosts:
        assert sorted(two_hosts.inventory()["host"]) == ["host0", "host1"]
        run = px.train(programs.keras_embedding_program(), cluster=two_hosts, select=2,
                       config=px.Config(mode="AR", steps=2, batch_size=4))
        run.wait(timeout=120)
    topology = {r: (t["host"], t["local_rank"], t["local_size"], t["cross_rank"],
                    t["cross_size"], t["cuda_visible_devices"]) for r, t in run.topology.items()}
    assert topology == {0: ("host0", 0, 1, 0, 2, ""), 1: ("host1", 0, 1, 1, 2, "")}


# -- bad input: clear errors, nothing started --------------------------------------------------
def test_nothing_selected_and_more_ranks_than_devices(cluster):
    with pytest.raises(SelectionError, match="nothing selected"):
        px.train(programs.keras_embedding_program(), cluster=cluster, select=[])
    with pytest.raises(SelectionError, match="asked for 9 ranks but only 4 CPU device"):
        px.train(programs.keras_embedding_program(), cluster=cluster, select=9)
    assert cluster_children(cluster) == []


def test_unpicklable_program_is_refused_before_anything_starts(cluster):
    program = px.Program(programs.keras_embedding_model, programs.regression_loss,
                         programs.id_batches, programs.optimizer_holding_a_lock)
    with pytest.raises(px.ProgramError, match="optimizer_fn cannot be pickled"):
        px.train(program, cluster=cluster, select=2, config=px.Config(mode="AR"))
    assert not any(cluster.client.processing().values())
    assert cluster_children(cluster) == []


def test_unreachable_scheduler_fails_within_the_timeout_naming_the_address():
    started = time.time()
    with pytest.raises(ClusterError, match=r"tcp://127\.0\.0\.1:9 within 2 s"):
        px.connect("tcp://127.0.0.1:9", timeout=2)
    assert time.time() - started < 10


def test_connect_to_an_existing_scheduler_by_address_and_by_client(cluster):
    by_address = px.connect(cluster.scheduler_address)
    try:
        assert len(by_address.inventory()) == 4
    finally:
        by_address.close()
    assert px.connect(cluster.client).client is cluster.client


def test_command_line_trains_on_the_embedded_cluster():
    """A compile-style program with validation data, validated every 2 steps."""
    result = subprocess.run(
        [sys.executable, "-m", "parallax_nb", "train", "parallax_nb.examples.clicks:program",
         "--mode", "AR", "--steps", "4", "--batch-size", "8", "--local", "2",
         "--validate-every", "2"],
        capture_output=True, text=True, timeout=240,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished, mode AR, 2 rank(s)" in result.stdout
    assert "4 steps in" in result.stdout
    assert re.search(r"validation at step 2: val_loss 0\.\d+, val_accuracy 0\.\d+, val_auc",
                     result.stderr)   # printed as it happens
    assert re.search(r"validation at step 4: .*\(5001 examples; 2 validation\(s\)\)",
                     result.stdout)   # in the report
    assert "training metrics (last window, mean over ranks): accuracy" in result.stdout
    run_id = re.search(r"^Run (\w+):", result.stdout, re.M).group(1)
    assert run_processes(run_id) == []


def test_a_killed_dask_worker_fails_the_run_and_leaves_no_process_or_files(tmp_path):
    import glob

    with px.connect(local=2) as cluster:
        run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                       config=px.Config(mode="AR", steps=1_000_000, batch_size=4))
        assert wait_for(lambda: len(run.metrics) > 4, timeout=120)
        worker = run.slots[1].device.worker
        worker_pid = cluster.client.run(os.getpid, workers=[worker])[worker]
        os.kill(worker_pid, signal.SIGKILL)
        with pytest.raises(px.ParallaxError, match="rank 1 .*(left the cluster|failed)"):
            run.wait(timeout=60)
        assert wait_until_gone(list(run.pids.values())) == []
        assert wait_for(lambda: not glob.glob(f"/tmp/parallax-{run.run_id}-*"), timeout=10)


def test_connect_to_a_cluster_object():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as local:
        cluster = px.connect(local)
        try:
            inventory = cluster.inventory()
            assert list(inventory["kind"]) == ["CPU", "CPU"]
            assert cluster.scheduler_address == local.scheduler_address
        finally:
            cluster.close()


HOLDING_WORKER = """
import sys, time
import psutil
from parallax_nb.launch import warm

let_go = warm.hold()                 # a run's process starts up before any spare
warm.replenish()
time.sleep(1.0)
print(len(psutil.Process().children()), flush=True)
let_go()
while not psutil.Process().children():
    time.sleep(0.01)
time.sleep(0.3)
let_go = warm.hold()                 # the next run starts while the spare imports
print(psutil.Process().children()[0].pid, flush=True)
sys.stdin.readline()
let_go()
print("started up", flush=True)
sys.stdin.readline()
warm.hold()
print("held", flush=True)
time.sleep(600)
"""


def test_spares_wait_while_a_run_starts_up_and_never_outlive_their_worker():
    """`launch.warm.hold`: no spare starts, and one still importing stops, while a run's
    process starts up on the worker; it goes on after. A spare stopped when its worker is
    killed is continued by the kernel, sees its worker gone and exits with its folder."""
    import psutil

    worker = subprocess.Popen([sys.executable, "-c", HOLDING_WORKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    spares = []
    try:
        assert worker.stdout.readline().strip() == "0"
        spare = psutil.Process(int(worker.stdout.readline()))
        folder = spare.cwd()
        assert "parallax-warm-" in folder
        assert wait_for(lambda: spare.status() == psutil.STATUS_STOPPED, timeout=5)
        worker.stdin.write("\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "started up"
        assert spare.status() != psutil.STATUS_STOPPED
        worker.stdin.write("\n")
        worker.stdin.flush()
        assert worker.stdout.readline().strip() == "held"
        spares = psutil.Process(worker.pid).children()
        assert wait_for(lambda: any(p.status() == psutil.STATUS_STOPPED for p in spares), 5)
    finally:
        worker.kill()
        worker.wait()
    assert wait_until_gone([p.pid for p in spares] or [spare.pid], timeout=15) == []
    assert not os.path.exists(folder)


def spares_per_worker(cluster):
    import psutil

    return {pid: len([c for c in psutil.Process(pid).children() if is_spare(c)])
            for pid in cluster.client.run(os.getpid).values()}


def test_a_second_run_starts_in_the_spares_the_first_left_and_trains_the_same(cluster):
    """Config.warm_start: after a run each worker keeps a process with TensorFlow imported;
    the next run's ranks are those processes, and train exactly as cold ones."""
    program = programs.keras_embedding_program()
    config = px.Config(mode="AR", steps=3, batch_size=4)
    cold = px.train(program, cluster=cluster, select=2, config=config.replace(warm_start=False))
    expected = cold.result(timeout=200)
    first = px.train(program, cluster=cluster, select=2, config=config)
    first.wait(timeout=200)
    # the workers that ran it are back to their full count (another may have none: an
    # earlier test's connection released them)
    assert wait_for(lambda: set(spares_per_worker(cluster).values()) - {0} == {SPARES_KEPT},
                    timeout=60)
    spares = {p.pid for p in cluster_children(cluster, spares=True) if is_spare(p)}
    second = px.train(program, cluster=cluster, select=2, config=config)
    trained = second.result(timeout=200)
    assert set(second.pids.values()) <= spares and not set(cold.pids.values()) & spares
    for name in expected:
        np.testing.assert_array_equal(trained[name], expected[name])
    assert wait_until_gone([p.pid for p in run_processes(second.run_id)]) == []
