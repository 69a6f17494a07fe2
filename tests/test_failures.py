"""No silent failure, checks before launch, interrupts, clean-up and prompt detection
(issue 17, items 2-6), each with its exact message and nothing left behind."""
import glob
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import pytest
import tensorflow as tf

import parallax_nb as px
import programs
from cluster_tools import cluster_children, run_processes, wait_for, wait_until_gone
from parallax_nb.launch.checks import DevicesInUse

pytestmark = pytest.mark.timeout(300)
TMP = tempfile.gettempdir()


def nothing_left(run):
    assert wait_until_gone([p.pid for p in run_processes(run.run_id)]) == []
    assert wait_for(lambda: not glob.glob(os.path.join(TMP, f"parallax-{run.run_id}-*")),
                    timeout=10)


def interrupt_after(seconds):
    """Ctrl-C to this process (its main thread) after ``seconds``."""
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


# -- 3. no silent failure ----------------------------------------------------------------------
def test_a_nan_loss_stops_the_run_with_step_rank_and_variables(cluster, tmp_path):
    run = px.train(programs.nan_program(), cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=8, batch_size=4,
                                    checkpoint_dir=str(tmp_path), checkpoint_every_steps=1))
    with pytest.raises(px.RankError) as failed:
        run.wait(timeout=120)
    assert str(failed.value).startswith(
        "rank 1 on host " + run.slots[1].host + " failed: NonFiniteError: non-finite values at "
        "step 3 on rank 1: the loss is nan; gradients not finite: out/kernel:0, out/bias:0, "
        "emb/embeddings:0 (partition 0). The run stopped before saving this step "
        "(Config(on_nonfinite='stop'); 'warn' trains on with a note, 'ignore' skips the check)")
    assert failed.value.traceback == "" and run.status == "failed"
    # the NaN step was never saved: the newest checkpoint is the step before it
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    nothing_left(run)


# What rank 0 raises when rank 1's model_fn raised and left Horovod (seen on a 2-core machine).
HOROVOD_ECHO = (
    "UnknownError: {{function_node __wrapped__HorovodBroadcastInplaceResource_num_variables_1_"
    "device_/job:localhost/replica:0/task:0/device:CPU:0}} Horovod has been shut down. This was "
    "caused by an exception on one of the ranks or an attempt to allreduce, allgather or "
    "broadcast a tensor after one of the ranks finished execution. If the shutdown was caused "
    "by an exception, you should see the exception in the log before the first shutdown "
    "message. [Op:HorovodBroadcastInplaceResource] name: ")


def test_the_failing_rank_is_blamed_even_when_its_echo_stopped_it_first():
    """Pure logic, no process: rank 1 raises; rank 0's echo reaches the client first and the
    run stops rank 1 while it is still exiting. Rank 1's own error is still its outcome, and
    the run blames it, whichever order the errors came in."""
    from parallax_nb.errors import RankError
    from parallax_nb.launch.recovery import primary
    from parallax_nb.launch.supervisor import ending

    reported = {"message": "ProgramError: model_fn() raised ValueError: model_fn broke on rank 1",
                "traceback": "Traceback (most recent call last): ..."}
    assert ending(True, -signal.SIGTERM, reported) == "failed"   # stopped, but its own error
    assert ending(True, -signal.SIGTERM, None) == "stopped"      # a stop makes no error
    assert ending(True, None, None, must_run_until_stopped=True) == "stopped"
    assert ending(False, 0, None) == "finished"
    assert ending(False, 1, reported) == "failed"
    assert ending(False, -signal.SIGKILL, None) == "failed"
    assert ending(False, 0, None, must_run_until_stopped=True) == "failed"
    echo = RankError(0, "vm", HOROVOD_ECHO, "Traceback (most recent call last): ...")
    cause = RankError(1, "vm", reported["message"], reported["traceback"])
    assert primary([echo, cause]) is cause and primary([cause, echo]) is cause


def test_warn_trains_on_with_one_note_and_ignore_does_not_check(cluster):
    warned = px.train(programs.nan_program(), cluster=cluster, select=2,
                      config=px.Config(mode="AR", steps=8, batch_size=4, on_nonfinite="warn"))
    warned.wait(timeout=120)
    notes = sorted(n for n in warned.notes if "non-finite" in n)
    # rank 1's bad row first; the NaN weights then reach rank 0 a step later: once per rank
    assert notes == [f"non-finite values at step {step} on rank {rank}: the loss is nan; "
                     f"gradients not finite: emb/embeddings:0, out/kernel:0, out/bias:0. "
                     f"Training goes on (Config(on_nonfinite='warn'); noted once per rank)"
                     for step, rank in ((3, 1), (4, 0))]
    assert warned.status == "finished"
    ignored = px.train(programs.nan_program(), cluster=cluster, select=2,
                       config=px.Config(mode="AR", steps=8, batch_size=4,
                                        on_nonfinite="ignore"))
    ignored.wait(timeout=120)
    assert ignored.status == "finished" and not [n for n in ignored.notes if "finite" in n]
    with pytest.raises(px.ConfigError, match="on_nonfinite='never' is not one of 'stop', "
                                             "'warn', 'ignore'"):
        px.Config(on_nonfinite="never")


def test_partitions_above_the_rows_are_clamped_with_a_note(cluster):
    run = px.train(programs.keras_embedding_program(rows=6), cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=2, batch_size=4, partitions=8,
                                    placement={"emb/embeddings:0": "ps"}))
    run.wait(timeout=120)
    assert "partitions=8 for emb/embeddings:0 is more than its 6 rows: it has 6 partition(s), " \
           "one row each" in run.notes
    assert "partitions=8" in str(run.report())


def test_a_second_run_on_devices_in_use_is_refused_naming_the_running_run(cluster):
    first = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="AR", steps=1_000_000, batch_size=4))
    try:
        assert wait_for(lambda: len(first.metrics) > 2, timeout=120)
        started = time.time()
        with pytest.raises(DevicesInUse, match=rf"^device\(s\) \S+/worker \S+ slot 0 are in "
                                               rf"use by run {first.run_id} "
                                               rf"\(program 'keras_embedding', started "
                                               rf"\d\d:\d\d:\d\d, still running\): wait for it "
                                               rf"\(run.wait\(\)\), stop it \(run.stop\(\)\), or "
                                               rf"select other devices$"):
            px.train(programs.keras_embedding_program(), cluster=cluster, select=1,
                     config=px.Config(mode="AR", steps=2, batch_size=4))
        assert time.time() - started < 10
    finally:
        first.stop()
    # once it is over, the devices are free again
    again = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="AR", steps=2, batch_size=4))
    assert again.wait(timeout=120).status == "finished"


# -- 4. checks before launch ---------------------------------------------------------------------
def test_an_optimizer_fn_that_returns_no_optimizer_is_refused_before_launch(cluster):
    program = px.Program(programs.keras_embedding_model, programs.regression_loss,
                         programs.id_batches, programs.not_an_optimizer)
    started = time.time()
    with pytest.raises(px.ProgramError, match=r"^optimizer_fn\(\) returned builtins.object, not "
                                              r"an optimizer: it must return a new Keras "
                                              r"optimizer instance on every call, e.g. "
                                              r"`return tf.keras.optimizers.Adagrad\(0.1\)`$"):
        px.train(program, cluster=cluster, select=2, config=px.Config(mode="AR"))
    assert time.time() - started < 3
    assert cluster_children(cluster) == []


def test_a_checkpoint_dir_the_workers_cannot_write_is_refused_before_launch(cluster, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    directory = str(blocker / "ckpt")
    worker = cluster.resolve(2).devices[0].worker
    started = time.time()
    with pytest.raises(px.ParallaxError) as refused:
        px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                 config=px.Config(mode="AR", steps=2, checkpoint_dir=directory))
    assert str(refused.value) == (
        f"checkpoint_dir {directory!r} cannot be written on Dask worker {worker} (rank 0 "
        f"saves the checkpoints there): NotADirectoryError: Not a directory. Use a directory "
        f"every such worker can write (a shared file system on several machines), or "
        f"checkpoint_dir=None")
    assert time.time() - started < 15
    assert cluster_children(cluster) == []


# -- 2. interrupts -------------------------------------------------------------------------------
@pytest.mark.parametrize("blocking", ["wait", "result"])
def test_ctrl_c_in_a_blocking_call_stops_the_run_and_leaves_nothing(cluster, blocking):
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=1_000_000, batch_size=4))
    assert wait_for(lambda: len(run.metrics) > 2, timeout=120)
    timer = interrupt_after(0.5)
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        getattr(run, blocking)()
    timer.join()
    assert time.time() - started < 10
    assert run.status == "stopped" and run.done
    nothing_left(run)


def test_ctrl_c_while_the_run_plans_its_partitions_leaves_nothing(cluster):
    config = px.Config(mode="HYBRID", steps=5, batch_size=4, partition_search_min_bytes=1,
                       search_warmup_steps=1, search_window_steps=2)
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=config, progress=False)
    # past the analysis, inside the trial runs (the first trial is launching)
    assert wait_for(lambda: run.planning is not None and run.planning.trial_run_ids, 120)
    timer = interrupt_after(1.0)
    with pytest.raises(KeyboardInterrupt):
        run.wait()
    timer.join()
    assert run.status == "stopped" and run.slots == []     # nothing was launched
    assert wait_until_gone([p.pid for p in cluster_children(cluster)]) == []
    for trial in run.planning.trial_run_ids:     # what each trial left: nothing
        assert wait_until_gone([p.pid for p in run_processes(trial)]) == []
        assert wait_for(lambda: not glob.glob(os.path.join(TMP, f"parallax-{trial}-*")), 10)
    # and the devices are free for the next run
    again = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="AR", steps=2, batch_size=4))
    assert again.wait(timeout=120).status == "finished"


# -- 5. clean up ---------------------------------------------------------------------------------
def test_interrupted_saves_go_at_the_next_restore_and_save(cluster, tmp_path):
    def leftovers(step):   # what a chief killed while saving step `step` leaves
        (tmp_path / f"ckpt-{step}_temp").mkdir()
        (tmp_path / f"ckpt-{step}_temp" / "part-00001-of-00002.data-00000-of-00001.tempstate7"
         ).write_bytes(b"x" * 1000)
        (tmp_path / f"ckpt-{step}.index").write_bytes(b"half")
        (tmp_path / "checkpoint.tmp5f3a").write_text("")

    config = px.Config(mode="HYBRID", steps=2, batch_size=4, checkpoint_dir=str(tmp_path),
                       checkpoint_every_steps=1, partitions=1)
    px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
             config=config).wait(timeout=120)
    leftovers(3)
    # a run with nothing left to train only restores: the restore clears them
    restored = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                        config=config)
    restored.wait(timeout=120)
    assert any("restored step 2" in n for n in restored.notes)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "ckpt-1.data-00000-of-00001",
                                            "ckpt-1.index", "ckpt-2.data-00000-of-00001",
                                            "ckpt-2.index"]


def test_the_stale_folder_sweep_takes_only_this_users_abandoned_folders(tmp_path):
    """What every launch sweeps from the temporary directory (`sweep_stale_workdirs`): an old
    folder of this user's that no process works in; never one a live process works in, a
    fresh one, one not named as the SDK names its folders, or (run as root) another user's."""
    from parallax_nb.launch.supervisor import STALE_SECONDS, sweep_stale_workdirs

    old = time.time() - STALE_SECONDS - 5

    def folder(name, uid=None):
        path = tmp_path / name
        path.mkdir()
        if uid is not None:
            os.chown(path, uid, -1)
        os.utime(path, (old, old))
        return path

    abandoned = folder("parallax-0123456789-rank0-abc")
    working = folder("parallax-warm-def")
    folder("parallax-notes")
    (tmp_path / "parallax-warm-new").mkdir()
    if os.geteuid() == 0:
        folder("parallax-9876543210-ps1-ghi", uid=65534)    # nobody's
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               cwd=working)
    try:
        assert wait_for(lambda: psutil.Process(process.pid).cwd() == str(working), 10)
        assert sweep_stale_workdirs(str(tmp_path)) == [str(abandoned)]
    finally:
        process.kill()
        process.wait()
    assert not abandoned.exists() and len(list(tmp_path.iterdir())) == 3 + (os.geteuid() == 0)


def test_a_launch_elsewhere_sweeps_around_a_running_runs_folders(cluster):
    """Clusters on one machine share its temporary directory, and every launch sweeps it
    (`sweep_stale_workdirs`, as another cluster's next launch would run it): the folders of a
    run that is training (made to look abandoned) stay while their processes work in them."""
    from parallax_nb.launch.supervisor import sweep_stale_workdirs

    first = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="HYBRID", steps=1_000_000, batch_size=4))
    try:
        assert wait_for(lambda: len(first.metrics) > 2, timeout=120)
        folders = glob.glob(os.path.join(TMP, f"parallax-{first.run_id}-*"))
        assert len(folders) >= 2                       # its ranks' (and server's) folders
        old = time.time() - 3600
        for path in folders:
            os.utime(path, (old, old))
        removed = sweep_stale_workdirs()
        assert not set(folders) & set(removed)
        assert all(os.path.isdir(path) for path in folders)
        steps = len(first.metrics)
        assert wait_for(lambda: len(first.metrics) > steps, timeout=60)
        assert first.status == "running"
    finally:
        first.stop()
    nothing_left(first)


CLIENT = """
import sys, time
sys.path.insert(0, {tests!r})
import conftest, programs
import parallax_nb as px
cluster = px.connect({address!r})
run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
               config=px.Config(mode="HYBRID", steps=1_000_000, batch_size=4))
while len(run.metrics) < 3:
    time.sleep(0.1)
print(run.run_id, flush=True)
time.sleep(600)
"""


def test_a_run_goes_with_its_client_when_the_client_dies(cluster):
    script = CLIENT.format(tests=os.path.dirname(__file__), address=cluster.scheduler_address)
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        run_id = client.stdout.readline().strip()
        assert run_id and run_processes(run_id)
        assert glob.glob(os.path.join(TMP, f"parallax-{run_id}-rank*"))
    finally:
        client.kill()
        client.wait()
    started = time.time()
    assert wait_until_gone([p.pid for p in run_processes(run_id)], timeout=15) == []
    assert wait_for(lambda: not glob.glob(os.path.join(TMP, f"parallax-{run_id}-*")), 10)
    assert time.time() - started < 10
    # its devices are free again
    again = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                     config=px.Config(mode="AR", steps=2, batch_size=4))
    assert again.wait(timeout=120).status == "finished"


# -- 6. prompt detection -------------------------------------------------------------------------
def test_a_lost_worker_fails_the_run_within_two_seconds_of_its_processes_going():
    with px.connect(local=2) as two:
        run = px.train(programs.keras_embedding_program(), cluster=two, select=2,
                       config=px.Config(mode="AR", steps=1_000_000, batch_size=4))
        assert wait_for(lambda: len(run.metrics) > 4, timeout=120)
        worker = run.slots[1].device.worker
        worker_pid = two.client.run(os.getpid, workers=[worker])[worker]
        rank_pid = run.pids[1]
        os.kill(worker_pid, signal.SIGKILL)
        assert wait_until_gone([worker_pid, rank_pid], timeout=10) == []
        gone_at = time.time()
        assert wait_for(lambda: run.done, timeout=10, interval=0.02)
        detected = time.time() - gone_at
        assert detected < 2.0, detected
        with pytest.raises(px.RankError, match=rf"^rank 1 on host \S+ failed: Dask worker "
                                               rf"{worker} left the cluster \(not recovered: "
                                               rf"with Config\(checkpoint_dir=\.\.\.\) the run "
                                               rf"would have restarted from its last checkpoint; "
                                               rf"max_restarts sets how often\)$"):
            run.wait()
        nothing_left(run)


# -- 8. every port closes with the run ------------------------------------------------------------
def listening(pids):
    """{(pid's role, ip, port)} of the TCP sockets the processes listen on."""
    import psutil

    found = set()
    for pid in pids:
        try:
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.status == psutil.CONN_LISTEN:
                    found.add((pid, c.laddr.ip, c.laddr.port))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_every_port_closes_with_the_run():
    import psutil

    with px.connect(local=2) as two:
        workers = sorted({d.worker for d in two.devices(refresh=True)})
        two.label_hosts({w: f"host{i}" for i, w in enumerate(workers)})
        worker_pids = list(two.client.run(os.getpid).values())

        def ours():
            pids = {os.getpid(), *worker_pids}
            for pid in worker_pids:
                pids |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
            return pids

        before = listening(ours())
        run = px.train(programs.keras_embedding_program(), cluster=two, select=2,
                       config=px.Config(mode="HYBRID", steps=1_000_000, batch_size=4,
                                        partitions=2, placement={"emb/embeddings:0": "ps"}))
        assert wait_for(lambda: len(run.metrics) > 4, timeout=120)
        during = listening(ours()) - before
        rank_pids, server_pid = set(run.pids.values()), run.servers_started[1]["pid"]
        by_process = {}
        for pid, ip, port in during:
            role = ("client" if pid == os.getpid() else "server" if pid == server_pid
                    else "rank" if pid in rank_pids else "other")
            by_process.setdefault(role, set()).add(ip)
        # the rendezvous listens on the cluster's address only; what ranks and servers
        # listen on is TensorFlow's gRPC (server 0 in rank 0, the ranks' own endpoints, the
        # server process): every interface, TensorFlow has no option (docs/security.md)
        assert by_process["client"] == {"127.0.0.1"}
        assert by_process["rank"] <= {"0.0.0.0", "::"} and by_process["server"] <= {"0.0.0.0",
                                                                                    "::"}
        assert "other" not in by_process
        run.stop()
        assert wait_until_gone(list(rank_pids | {server_pid})) == []
        assert wait_for(lambda: listening(ours()) - before == set(), timeout=5), \
            listening(ours()) - before
