"""`px.check`: a real LocalCluster passes every row; real Dask workers started with another
environment (no TensorFlow at all, a Horovod without TensorFlow ops, Keras 3 as tf.keras,
another parallax_nb) fail exactly their rows with the fix; two simulated machines (network
namespaces) pass, and fail the address row once one hostname resolves to loopback; px.train
refuses such clusters within seconds and starts nothing; the CLI and the magic print the table."""
import logging
import os
import subprocess
import sys
import time

import pytest

import parallax_nb as px
import programs
from cluster_tools import cluster_children, wait_for, wait_until_gone
from parallax_nb.analysis.timing import StepCost
from parallax_nb.cluster.check import CHECKS, ClusterNotReady, require_ready
from parallax_nb.cluster.devices import devices_from_probes
from parallax_nb.cluster.scheduler_view import scheduler_workers
from parallax_nb.launch.processes import terminate

pytestmark = pytest.mark.timeout(300)
SITE = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))
MISSING = ("tensorflow", "tf_keras", "keras", "horovod", "parallax_nb", "__editable__")


@pytest.fixture(scope="module")
def healthy():
    with px.connect(local=2, spares=False) as cluster:   # checks only: no run to start warm
        yield cluster


def statuses(result, worker=None):
    return {r.check: r.status for r in result.rows if worker is None or r.worker == worker}


def test_a_healthy_local_cluster_passes_every_row(healthy):
    started = time.monotonic()
    result = px.check(healthy)
    assert time.monotonic() - started < 90
    assert result.ok, str(result)
    assert len(result.workers) == 2 and result.machines == 1 and not result.quick
    for worker in result.workers:
        assert statuses(result, worker) == {c: "ok" for c in CHECKS}, str(result)
    assert result.row(result.workers[0], "horovod gloo").value.startswith("built with Gloo")
    assert sorted(r["rank"] for r in result.ranks) == [0, 1]
    assert all(r["cuda_visible_devices"] == "" for r in result.ranks)   # CPU ranks see no GPU
    frame = result.to_frame()
    assert list(frame.columns) == ["host", "worker", "check", "status", "value", "fix"]
    assert len(frame) == 2 * len(CHECKS)
    html = result._repr_html_()
    assert "<table" in html and "horovod gloo" in html and "OK" in html
    assert str(result).startswith(f"Parallax check of {healthy.scheduler_address}: 2 worker(s)")


def test_simulated_hosts_on_one_machine_pass_the_quick_check(healthy):
    workers = sorted({d.worker for d in healthy.devices(refresh=True)})
    healthy.label_hosts({w: f"host{i}" for i, w in enumerate(workers)})
    try:
        result = healthy.check(quick=True)
        assert result.ok, str(result)
        assert result.hosts == ["host0", "host1"] and result.machines == 1
        assert {r.status for r in result.rows if r.check == "horovod gloo"} == {"skip"}
        assert "one machine: loopback is enough" in result.row(workers[0], "address").value
    finally:
        healthy.host_labels.clear()     # back to hostnames
        healthy.devices(refresh=True)


def test_the_worker_list_survives_the_clients_own_refresh(healthy):
    """The client refreshes its cached identity (with no workers) on a timer; made to refresh
    every millisecond, `scheduler_info()` comes back empty now and then, the view never."""
    client = healthy.client
    refresh = client._periodic_callbacks["scheduler-info"]

    async def every(milliseconds):          # on the client's loop, where the timer runs
        refresh.stop()
        refresh.callback_time = milliseconds
        refresh.start()

    client.sync(every, 1)
    try:
        assert all(len(scheduler_workers(client)) == 2 for _ in range(1000))
        # the race the view survives: how often the client's own call loses it depends on
        # the machine's load (a loaded 2-core machine ran 20 s without one); the view is
        # checked each time, and the test says so when the race never came
        deadline, raced = time.monotonic() + 5, False
        while not raced and time.monotonic() < deadline:
            assert len(scheduler_workers(client)) == 2
            raced = not client.scheduler_info(n_workers=-1)["workers"]
        if not raced:
            pytest.skip("the client's refresh never emptied scheduler_info() within 5 s here")
    finally:
        client.sync(every, 2000)


def test_one_machine_has_no_link_to_measure(healthy):
    assert healthy.measure_link() is None       # placement counts bytes there


def test_train_checks_once_per_cluster_and_workers(healthy):
    selection = healthy.resolve(None)
    started = time.monotonic()
    require_ready(healthy, selection)
    first = time.monotonic() - started
    started = time.monotonic()
    require_ready(healthy, selection)            # remembered: no probe this time
    assert time.monotonic() - started < min(0.05, first)


# -- workers with another environment ---------------------------------------------------------
def start_worker(scheduler, name, env=None, python=sys.executable, cwd=None):
    environment = dict(os.environ, **(env or {}))
    return subprocess.Popen(
        [python, "-m", "distributed.cli.dask_worker", scheduler, "--name", name,
         "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
         "--death-timeout", "30"],
        env=environment, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def worker_named(cluster, name):
    workers = scheduler_workers(cluster.client)
    return next(a for a, w in workers.items() if w["name"] == name)


def package_dir(root, name, init):
    os.makedirs(os.path.join(root, name))
    with open(os.path.join(root, name, "__init__.py"), "w") as f:
        f.write(init)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A scheduler with two workers that have parallax_nb but break one row each: a Horovod
    without TensorFlow ops shadowing the real one, and TF_USE_LEGACY_KERAS=0 (Keras 3)."""
    from distributed import LocalCluster

    fake = package_dir(str(tmp_path_factory.mktemp("fake-horovod")), "horovod",
                       "__version__ = '0.28.1'\n")
    local = LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None,
                         silence_logs=logging.ERROR)
    processes = [start_worker(local.scheduler_address, "no-ops",
                              {"PYTHONPATH": os.pathsep.join([fake, os.environ.get(
                                  "PYTHONPATH", "")])}),
                 start_worker(local.scheduler_address, "keras3",
                              {"TF_USE_LEGACY_KERAS": "0"})]
    cluster = px.connect(local.scheduler_address)
    try:
        cluster.client.wait_for_workers(2, timeout=60)
        yield cluster
    finally:
        pids = [p.pid for p in cluster_children(cluster)]
        cluster.close()
        for process in processes:
            terminate(process)
        local.close()
        assert wait_until_gone(pids) == []


def test_each_broken_worker_fails_its_own_row_with_the_fix(mixed):
    result = px.check(mixed, quick=True)
    assert not result.ok
    no_ops, keras3 = worker_named(mixed, "no-ops"), worker_named(mixed, "keras3")
    failed = {(r.worker, r.check) for r in result.failures}
    assert failed == {(no_ops, "horovod tensorflow ops"), (keras3, "keras")}, str(result)
    ops = result.row(no_ops, "horovod tensorflow ops")
    assert "built without TensorFlow ops" in ops.value
    assert "rebuild Horovod with its TensorFlow ops" in ops.fix
    assert "HOROVOD_WITH_TENSORFLOW=1" in ops.fix
    keras = result.row(keras3, "keras")
    assert "Keras 3" in keras.value and "TF_USE_LEGACY_KERAS=0" in keras.value
    assert "unset TF_USE_LEGACY_KERAS" not in keras.fix      # the fix names the client's value
    assert "TF_USE_LEGACY_KERAS=1" in keras.fix
    assert "FAIL  horovod tensorflow ops" in str(result) and "fix: rebuild Horovod" in str(result)


def test_the_full_check_imports_what_the_ranks_import(mixed):
    result = px.check(mixed)
    no_ops, keras3 = worker_named(mixed, "no-ops"), worker_named(mixed, "keras3")
    assert {(r.worker, r.check) for r in result.failures} == \
        {(no_ops, "horovod tensorflow ops"), (keras3, "keras")}, str(result)
    assert "No module named 'horovod.tensorflow'" in result.row(no_ops,
                                                                "horovod tensorflow ops").value
    assert result.row(keras3, "keras").value.startswith("tf.keras is Keras 3")
    assert result.row(keras3, "horovod gloo").status == "ok"
    assert result.row(no_ops, "horovod gloo").status == "skip"


def test_train_refuses_the_cluster_within_seconds_and_starts_nothing(mixed):
    started = time.monotonic()
    with pytest.raises(ClusterNotReady) as caught:
        px.train(programs.keras_embedding_program(), cluster=mixed, select=2,
                 config=px.Config(steps=2, batch_size=4, partitions=1))
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "this cluster cannot run the job; 2 check(s) failed (nothing was started)" in message
    assert "FAIL  keras" in message and "rebuild Horovod with its TensorFlow ops" in message
    assert isinstance(caught.value, px.ParallaxError)
    assert not caught.value.result.ok
    assert cluster_children(mixed) == []
    assert not mixed.client.processing() or not any(mixed.client.processing().values())


def test_workers_without_tensorflow_or_with_another_parallax_nb_answer(mixed, tmp_path):
    """A worker whose environment has Dask but no TensorFlow, Horovod, Keras or parallax_nb
    (a virtualenv holding the rest of this one's packages), and one whose parallax_nb is
    another version: the check runs on both and names what is missing."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    for entry in os.listdir(SITE):
        if not entry.lower().startswith(MISSING) and not entry.endswith(".pth"):
            os.symlink(os.path.join(SITE, entry), site / entry)
    other = package_dir(str(tmp_path / "other"), "parallax_nb", "__version__ = '0.0.9'\n")
    processes = [start_worker(mixed.scheduler_address, "bare", python=str(venv / "bin/python"),
                              env={"PYTHONPATH": ""}, cwd=str(tmp_path)),
                 start_worker(mixed.scheduler_address, "other-parallax",
                              env={"PYTHONPATH": other})]
    try:
        mixed.client.wait_for_workers(4, timeout=60)
        bare, other_px = worker_named(mixed, "bare"), worker_named(mixed, "other-parallax")
        result = px.check(mixed, quick=True, workers=[bare, other_px])
        assert statuses(result, bare) == {
            "python": "ok", "tensorflow": "FAIL", "keras": "FAIL", "horovod": "FAIL",
            "horovod tensorflow ops": "skip", "horovod gloo": "skip", "parallax_nb": "FAIL",
            "gpus": "skip", "ranks": "skip", "address": "ok", "interface": "skip",
            "tcp": "ok"}, str(result)
        assert result.row(bare, "tensorflow").value == "not installed"
        assert "pip install tensorflow-cpu==2.18.1" in result.row(bare, "tensorflow").fix
        assert "pip install tf_keras==" in result.row(bare, "keras").fix
        assert "pip install --no-build-isolation" in result.row(bare, "horovod").fix
        assert result.row(bare, "parallax_nb").value == "not importable"
        assert "install the client's parallax_nb (0.1.0" in result.row(bare, "parallax_nb").fix
        row = result.row(other_px, "parallax_nb")
        assert row.status == "FAIL" and row.value.startswith("0.0.9") and "client 0.1.0" in \
            row.value
        assert statuses(result, other_px)["tensorflow"] == "ok"
    finally:
        for process in processes:
            terminate(process)
        assert wait_for(lambda: len(scheduler_workers(mixed.client)) == 2,
                        timeout=30)


# -- two machines (network namespaces) -----------------------------------------------------------
def test_two_machines_pass_until_a_hostname_resolves_to_loopback():
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
    from benchmarks import netns

    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(f"no simulated machines here: {reason}")
    with netns.SimulatedHosts(hosts=2) as hosts:
        cluster = hosts.cluster
        link = cluster.measure_link()           # what Config(link="measure") plans with
        assert link.bytes_per_second > 0 and link.exchange_seconds > 1.2e-3   # + a round trip
        assert link.source.startswith("measured ") and " ms round trip" in link.source
        assert cluster.measure_link() is link   # kept per pair of machines
        # a finished run on these workers calibrates its fixed costs (px.train records one)
        cluster.record_step_cost(None, StepCost(0, 1, 0.0, link.bytes_per_second, 0.005))
        calibrated = cluster.measure_link()
        assert calibrated.collective_seconds == pytest.approx(0.005)
        assert (calibrated.bytes_per_second, calibrated.exchange_seconds) == \
            (link.bytes_per_second, link.exchange_seconds)
        assert cluster.step_costs(cluster.select(count=1)) == []   # kept per worker set
        result = px.check(cluster, quick=True)
        assert result.ok, str(result)
        assert result.machines == 2 and len(result.hosts) == 2
        second = worker_named(cluster, hosts.hosts[1].label)
        assert "reached from 1 worker(s) on other machine(s)" in result.row(second, "tcp").value
        assert result.row(second, "interface").value.startswith(
            f"HOROVOD_GLOO_IFACE={hosts.hosts[1].inner}")
        # the second machine's hostname now resolves to loopback (Debian's 127.0.1.1 habit)
        with open(os.path.join(netns.NETNS_ETC, hosts.hosts[1].label, "hosts"), "w") as f:
            f.write(f"127.0.0.1 localhost\n127.0.1.1 {os.uname().nodename}\n")
        result = px.check(cluster, quick=True)
        assert [(r.worker, r.check) for r in result.failures] == [(second, "address")], \
            str(result)
        fix = result.row(second, "address").fix
        assert f"'{hosts.hosts[1].address} {os.uname().nodename}' in /etc/hosts" in fix
        assert "Horovod's Gloo binds to the address the hostname resolves to" in fix
        started = time.monotonic()
        with pytest.raises(ClusterNotReady, match="FAIL  address"):
            px.train(programs.keras_embedding_program(), cluster=cluster,
                     config=px.Config(steps=2, batch_size=4, partitions=1))
        assert time.monotonic() - started < 30


# -- the GPU rows, from what dask-cuda workers report (recorded: CI has no GPU) ------------------
def test_each_gpu_gets_one_rank_whose_cuda_visible_devices_names_it():
    from parallax_nb.cluster.check.assignment import rank_assignment, rank_row

    gpus = [{"index": i, "uuid": f"GPU-{i}aaa", "name": "NVIDIA H100 80GB HBM3",
             "memory_total": 80 * 2**30, "memory_used": 0, "utilization": 0.0}
            for i in range(2)]
    probes = {f"tcp://10.0.0.1:{4000 + i}": {
        "hostname": "gpu1", "label": None, "nthreads": 1, "memory_limit": 2**34,
        "cuda_visible_devices": ",".join([str(i)] + [str(j) for j in range(2) if j != i]),
        "gpus": gpus} for i in range(2)}
    devices = devices_from_probes(probes)
    ranks, problems = rank_assignment(devices, None, {}, probes)
    assert problems == []
    assert sorted(r["cuda_visible_devices"] for r in ranks) == ["GPU-0aaa", "GPU-1aaa"]
    for address, probe in probes.items():
        status, value, _ = rank_row(address, ranks, probe)
        mine = [r for r in ranks if r["worker"] == address]
        assert status == "ok" and len(mine) == 1
        assert mine[0]["cuda_visible_devices"] == probe["gpus"][int(
            probe["cuda_visible_devices"][0])]["uuid"]
        assert f"CUDA_VISIBLE_DEVICES={mine[0]['device']} (NVIDIA H100 80GB HBM3)" in value


# -- the command line and the magic --------------------------------------------------------------
def test_cli_prints_the_table_and_exits_non_zero_on_failure(mixed):
    done = subprocess.run([sys.executable, "-m", "parallax_nb", "check", "--scheduler",
                           mixed.scheduler_address, "--quick"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "2 problem(s)" in done.stdout and "FAIL  keras" in done.stdout
    assert "fix: rebuild Horovod with its TensorFlow ops" in done.stdout


def test_magic_checks_the_session_cluster(healthy, capsys, ipython):
    from parallax_nb.notebook import current_session

    shell = ipython
    shell.run_line_magic("load_ext", "parallax_nb")
    session = current_session()
    session.connect(healthy.client)
    try:
        shell.run_line_magic("parallax", "check --quick")
        out = capsys.readouterr().out
        assert f"Parallax check of {healthy.scheduler_address}" in out and ": OK" in out
        assert "ok    ranks" in out
    finally:
        session.cluster = None      # the healthy fixture closes its own cluster
