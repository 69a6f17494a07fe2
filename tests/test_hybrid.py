"""HYBRID training: sparse variables on partitioned parameter servers (real TF gRPC servers
in their own processes), dense ones through Horovod, on a LocalCluster of separate processes."""
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

import parallax_nb as px
import programs
from cluster_tools import cluster_children, run_processes, wait_for, wait_until_gone
from parallax_nb.runtime.profile import PHASES
from parallax_nb.runtime.single import train_single_device

pytestmark = pytest.mark.timeout(400)
SPARSE = "emb/embeddings:0"


@pytest.fixture(scope="module")
def cluster():
    with px.connect(local=3) as cluster:
        yield cluster
        assert wait_until_gone([p.pid for p in cluster_children(cluster)]) == []


def as_hosts(cluster, hosts):
    """Label the workers as one host, or as two (the first worker alone on host0)."""
    workers = sorted({d.worker for d in cluster.devices(refresh=True)})
    cluster.label_hosts({w: "host0" if hosts == 1 or i == 0 else "host1"
                         for i, w in enumerate(workers)})


def relative_error(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


CASES = [  # mode, optimizer, ranks, partitions, local aggregation, hosts, average_sparse
    # (each optimizer with and without local aggregation in HYBRID, every value of every
    # option at least once; the suite's budget keeps the combinations few: 6 runs of about
    # 11 s; the documented-reference test below adds AR and 2 partitions in every mode)
    ("HYBRID", "sgd", 2, 1, True, 1, False),
    ("HYBRID", "adagrad", 3, 3, True, 2, True),
    ("HYBRID", "adagrad", 3, 1, False, 1, False),
    ("HYBRID", "sgd", 2, 3, False, 2, True),
    ("PS", "sgd", 2, 2, False, 1, False),
    ("PS", "adagrad", 3, 3, True, 2, True),
]


@pytest.mark.parametrize("mode, optimizer, ranks, partitions, aggregate, hosts, average", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_training_equals_one_process_over_the_same_examples(cluster, mode, optimizer, ranks,
                                                             partitions, aggregate, hosts,
                                                             average):
    as_hosts(cluster, hosts)
    program = programs.keras_embedding_program(optimizer_fn=getattr(programs, optimizer))
    config = px.Config(mode=mode, steps=4, batch_size=4, partitions=partitions,
                       local_aggregation=aggregate, average_sparse=average)
    run = px.train(program, cluster=cluster, select=ranks, config=config)
    trained = run.result(timeout=300)
    # Summed sparse gradients (the default) are N times the single-process gradient.
    scale = None if average else {SPARSE: ranks}
    reference, _ = train_single_device(program, steps=4, batch_size=4 * ranks,
                                       gradient_scale=scale)
    assert sorted(trained) == sorted(reference)
    for name in reference:
        assert relative_error(trained[name], reference[name]) < 1e-5, name
    placement = run.analysis.replan(mode=mode).to_frame().set_index("name")
    assert placement.loc[SPARSE, "placement"] == "ps"
    assert placement.loc[SPARSE, "partitions"] == partitions
    dense_placement = "ps" if mode == "PS" else "allreduce"
    assert placement.loc["out/kernel:0", "placement"] == dense_placement
    assert len(run.servers_started) == hosts
    per_host = run.report().communication_per_host()
    assert sorted(per_host["host"]) == sorted({s.host for s in run.slots})
    assert (per_host["ps_recv"] > 0).all()


@pytest.mark.parametrize("average", [True, False], ids=["averaged", "summed"])
def test_every_mode_trains_to_the_same_weights_as_the_documented_reference(cluster, average):
    """The mode changes speed, never maths: HYBRID, PS and AR, same program and config;
    the always-on phase sample (step 2 of 3: profile_every, its stamps in every step)
    changes nothing either."""
    as_hosts(cluster, 1)
    program = programs.keras_embedding_program(optimizer_fn=programs.adagrad)
    config = px.Config(steps=3, batch_size=4, partitions=2, average_sparse=average)
    reference, _ = px.reference(program, config, ranks=2)
    trained = {}
    # one after the other (they share the devices); summed, PS's sparse path is HYBRID's
    for mode in ("HYBRID", "PS", "AR") if average else ("HYBRID", "AR"):
        run = px.train(program, cluster=cluster, select=2, config=config.replace(mode=mode))
        trained[mode] = run.result(timeout=300)
        sampled = run.metrics.dropna(subset=["t_compute"])
        assert sorted(sampled["step"]) == [2, 2], mode
    for mode, weights in trained.items():
        assert sorted(weights) == sorted(reference), mode
        for name in reference:
            assert relative_error(weights[name], reference[name]) < 1e-5, (mode, name)
    # summing is not averaging: the two settings train different sparse weights
    other, _ = px.reference(program, config.replace(average_sparse=not average), ranks=2)
    assert relative_error(other[SPARSE], reference[SPARSE]) > 1e-3


def test_a_sparse_table_cheaper_on_allreduce_is_synchronised_densely_with_the_same_maths(
        cluster):
    """A 5-row table looked up 12 times a step: HYBRID AllReduces its gradient as a dense
    one (the plan's choice, tested in test_analysis) and needs no server at all."""
    as_hosts(cluster, 1)
    program = programs.keras_embedding_program(optimizer_fn=programs.adagrad, rows=5)
    config = px.Config(mode="HYBRID", steps=3, batch_size=4)
    run = px.train(program, cluster=cluster, select=2, config=config)
    trained = run.result(timeout=300)
    table = next(p for p in run.analysis.placements if p.variable.name == SPARSE)
    assert (table.placement, table.dense_sync) == ("allreduce", True)
    assert run.servers_started == {} and (run.metrics["ps_recv"] == 0).all()
    reference, _ = px.reference(program, config, ranks=2)
    for name in reference:
        assert relative_error(trained[name], reference[name]) < 1e-5, name


def test_only_touched_rows_travel(cluster):
    as_hosts(cluster, 1)
    run = px.train(programs.big_table_program(), cluster=cluster, select=1,
                   config=px.Config(mode="HYBRID", steps=3, batch_size=100))
    run.wait(timeout=300)
    per_step = run.metrics.set_index("step")
    row_bytes = 64 * 4
    # 100 distinct rows gathered per step (plus their ids), pushed back once
    assert (per_step["ps_recv"] == 100 * row_bytes).all()
    assert (per_step["ps_sent"] == 100 * 8 + 100 * (row_bytes + 8)).all()
    assert per_step["ps_recv"].max() < 256e6 / 1000   # far below the table's 256 MB


def test_checkpoint_restore_continues_the_same_run(cluster, tmp_path):
    as_hosts(cluster, 1)
    program = programs.keras_embedding_program(optimizer_fn=programs.adagrad)

    def run(steps, directory):
        config = px.Config(mode="HYBRID", steps=steps, batch_size=4, partitions=2,
                           checkpoint_dir=str(directory), checkpoint_every_steps=2)
        return px.train(program, cluster=cluster, select=2, config=config)

    straight = run(6, tmp_path / "straight").result(timeout=300)
    first = run(3, tmp_path / "resumed")
    first.wait(timeout=300)
    assert tf.train.latest_checkpoint(str(tmp_path / "resumed")).endswith("ckpt-3")
    second = run(6, tmp_path / "resumed")
    resumed = second.result(timeout=300)
    assert any("restored step 3" in note for note in second.notes)
    assert list(second.metrics["step"].unique()) == [4, 5, 6]
    for name in straight:
        assert relative_error(resumed[name], straight[name]) < 1e-6, name
    assert not [p for p in os.listdir(tmp_path / "resumed") if "temp" in p]


def test_a_dead_parameter_server_fails_the_run_naming_it(cluster):
    as_hosts(cluster, 2)   # server 0 lives in rank 0; server 1 is a process on host1
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=1_000_000, batch_size=4))
    assert wait_for(lambda: len(run.metrics) > 4, timeout=120)
    assert run.servers_started[0]["pid"] == run.pids[0]
    os.kill(run.servers_started[1]["pid"], signal.SIGKILL)
    with pytest.raises(px.ParallaxError, match=r"parameter server 1 \(127\.0\.0\.1:\d+\) on "
                                               r"host host1 failed"):
        run.wait(timeout=60)
    assert wait_until_gone(list(run.pids.values())) == []
    assert wait_until_gone([p.pid for p in run_processes(run.run_id)]) == []


def test_dense_model_in_hybrid_runs_as_allreduce_and_says_so(cluster):
    as_hosts(cluster, 1)
    run = px.train(programs.dense_table_program(), cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=2, batch_size=4))
    run.wait(timeout=300)
    assert run.mode == "AR" and run.servers_started == {}
    assert "HYBRID runs as AR for this model" in run.notes


@pytest.mark.parametrize("mode", ["HYBRID", "AR"])
def test_profile_splits_every_step_into_phases_and_counts_what_a_step_blocks_on(cluster, mode):
    as_hosts(cluster, 1)
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode=mode, steps=6, batch_size=4, profile=True))
    run.wait(timeout=300)
    frame = run.metrics
    phases = [f"t_{p}" for p in PHASES]
    assert frame[phases].notna().all().all() and (frame[phases] >= 0).all().all()
    # the phases tile the step: host time is what the others leave of the wall clock
    np.testing.assert_allclose(frame[phases].sum(axis=1), frame["step_time"], rtol=1e-6)
    summary = run.report().phases()
    assert set(summary) == set(PHASES)
    assert "where a step's time goes" in str(run.report())
    # and on one clock: each rank's phases end in order after its step began, and its next
    # step begins after the last of them (launch.timeline; steps 2-5, each with a next one)
    timeline = run.report().timeline(first=1, last=5)
    assert list(timeline.index) == [0, 1] and (timeline["start"] >= 0).all()
    assert timeline.notna().all().all() and (timeline.diff(axis=1).iloc[:, 1:] >= 0).all().all()
    assert "one step across the ranks" in str(run.report())
    blocks = frame.groupby("rank")[["servers_touched", "collectives"]].max()
    if mode == "AR":      # dense gradients and barrier; allgathers of sparse values, indices
        assert blocks.to_dict("index") == {0: {"servers_touched": 0, "collectives": 3},
                                           1: {"servers_touched": 0, "collectives": 3}}
    else:                 # server 0 is in rank 0; rank 1 reaches it; one AllReduce (+barrier)
        assert blocks.to_dict("index") == {0: {"servers_touched": 0, "collectives": 1},
                                           1: {"servers_touched": 1, "collectives": 1}}
    # the AllReduce runs beside the pushes: rank 1 reads server 0 only in its exchange
    assert set(frame["updates_announced"]) == {int(mode == "HYBRID")}


def test_where_a_lookup_cannot_travel_in_the_exchange_the_allreduce_waits_for_the_updates(
        cluster):
    """server_sync: the servers' updates announce themselves to the exchanges only where
    every read of another process's server travels in one; a lookup gathered on its own
    does not, so the step keeps the AllReduce after the pushes, says so, and trains alike."""
    as_hosts(cluster, 1)
    program = programs.chained_lookup_program()
    run = px.train(program, cluster=cluster, select=2,
                   config=px.Config(mode="HYBRID", steps=3, batch_size=4, average_sparse=True,
                                    profile=True))
    trained = run.result(timeout=300)
    assert [n for n in run.notes if "the dense AllReduce waits for the servers' updates in "
            "this run: 1 lookup(s) from server tables gathered on their own" in n]
    assert set(run.metrics["updates_announced"]) == {0}
    reference, _ = train_single_device(program, steps=3, batch_size=8)
    for name in reference:
        assert relative_error(trained[name], reference[name]) < 1e-5, name


def test_a_step_exchanges_a_fixed_number_of_messages_with_a_server_whatever_its_tables(cluster):
    """#24: every lookup a step makes from one server travels in one message, the rows come
    back in one, the pushes go in one: what a step sends to a server does not grow with the
    number of tables. Packed or not, the weights are the same."""
    as_hosts(cluster, 2)   # rank 1 reaches server 0 in rank 0, and its host's server 1

    def train(tables, pack):
        run = px.train(programs.many_tables_program(tables), cluster=cluster, select=2,
                       config=px.Config(mode="HYBRID", steps=3, batch_size=4, partitions=2,
                                        profile=True, pack_pulls=pack))
        weights = run.result(timeout=300)
        messages = run.metrics.groupby("rank")["server_messages"].max().to_dict()
        return weights, messages, run.notes

    few, few_messages, _ = train(2, True)
    packed, packed_messages, notes = train(8, True)
    unpacked, unpacked_messages, _ = train(8, False)
    assert not [n for n in notes if "is packed" in n or "waits for the servers" in n]
    assert packed_messages == few_messages
    assert all(packed_messages[r] > 0 for r in (0, 1))
    # unpacked, each lookup and each partition's update is a message of its own
    assert all(unpacked_messages[r] >= packed_messages[r] + 8 for r in (0, 1))
    assert sorted(packed) == sorted(unpacked)
    for name in packed:
        assert relative_error(packed[name], unpacked[name]) < 1e-6, name
