"""The memory plan: what each process holds, against measured peak RSS, and plans that
cannot fit refused before anything starts."""
import pytest
from distributed import LocalCluster

import parallax_nb as px
import programs
from cluster_tools import cluster_children, wait_until_gone

pytestmark = pytest.mark.timeout(400)
MB = 2**20


def peak_rss(run):
    return int(run.metrics["peak_rss"].max())


@pytest.mark.parametrize("mode", ["AR", "HYBRID"])
def test_a_ranks_memory_is_what_the_plan_says_within_a_quarter(mode):
    """A 1M x 64 table (256 MiB) with Adagrad: the table, its accumulator and, while it is
    made, its initial value; measured as peak RSS above a run of a tiny model."""
    with px.connect(local=1) as cluster:
        tiny = px.train(programs.keras_embedding_program(), cluster=cluster, select=1,
                        config=px.Config(mode=mode, steps=2, batch_size=4))
        baseline = peak_rss(tiny.wait(timeout=300))
        run = px.train(programs.big_table_ar_program(), cluster=cluster, select=1,
                       config=px.Config(mode=mode, steps=3, batch_size=100))
        measured = peak_rss(run.wait(timeout=300)) - baseline
        predicted = run.analysis.memory().peak(0)
        children = [p.pid for p in cluster_children(cluster)]
    assert wait_until_gone(children) == []
    assert 700 * MB < predicted < 900 * MB      # 3 x 256 MiB and a small head
    assert abs(measured - predicted) / predicted < 0.25, (measured / MB, predicted / MB)


def test_memory_per_process_is_reported_for_every_mode():
    report = px.analyze(programs.big_table_ar_program(rows=150_000), steps=1,
                        config=px.Config(batch_size=100)).replan(machines=2,
                                                                workers_per_machine=1,
                                                                servers=2)
    table = 150_000 * 64 * 4       # over the 32 MiB a table must be under to leave the servers
    frame = report.memory_frame().set_index(["mode", "process"])
    held, peak = frame["bytes"], frame["peak_bytes"]
    # AR: table and accumulator in every rank; HYBRID: half of both on each server
    assert held[("AR", "rank 1")] == pytest.approx(2 * table, rel=0.01)
    assert held[("HYBRID", "server 1")] == pytest.approx(table, rel=0.01)
    assert held[("HYBRID", "rank 1")] < 0.01 * table
    # Peaks come while the variables are made: the initializer's three copies of the table,
    # in every AR rank and in HYBRID's chief (which makes the server tables), none elsewhere.
    assert peak[("AR", "rank 1")] == pytest.approx(3 * table, rel=0.01)
    assert peak[("HYBRID", "rank 0")] == pytest.approx(3 * table, rel=0.01)
    assert peak[("HYBRID", "rank 1")] < 0.01 * table
    assert peak[("HYBRID", "server 1")] == held[("HYBRID", "server 1")]
    assert "memory per process" in str(report)


def test_a_plan_that_cannot_fit_is_refused_before_launch_saying_what_would():
    """Four 300 MB tables: AR needs them all with their Adagrad slots in each rank (2.4 GB,
    and 0.73 GB of TensorFlow); HYBRID over two machines fits the same 2.9 GB workers (the
    chief holds half the tables, and three copies of one while it makes its initial value;
    the other worker a rank and server 1 with the other half: 1.2 GB and two processes)."""
    program = programs.big_tables_program(rows=1_171_875)
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="2.9GB",
                      processes=True, host="127.0.0.1", dashboard_address=None) as local:
        with px.connect(local, host_labels=None) as cluster:
            workers = sorted(d.worker for d in cluster.devices(refresh=True))
            cluster.label_hosts({w: f"host{i}" for i, w in enumerate(workers)})
            with pytest.raises(px.ConfigError, match=r"the AR plan does not fit the workers' "
                                                     r"memory: worker \S+ may use 2\.9 GB and "
                                                     r"would hold .*what would fit: "
                                                     r"mode='HYBRID'"):
                px.train(program, cluster=cluster, select=2,
                         config=px.Config(mode="AR", steps=2, batch_size=100))
            assert cluster_children(cluster) == [] or all(
                "parallax" not in " ".join(p.cmdline()) for p in cluster_children(cluster))
