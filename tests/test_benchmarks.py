"""The benchmark's quick variant, run as `make bench-quick` runs it (so it cannot rot), and
what its results must show: every configuration measured, bytes per step on the links within
20% of the cost model, the simulated machines torn down, also when the run is killed."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from benchmarks import netns
from benchmarks.summary import TOLERANCE

pytestmark = pytest.mark.timeout(400)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {"HYBRID", "PS", "AR"}
NETNS = netns.unavailable_reason()


def bench(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "benchmarks.paper_comparison", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def leftovers(pid):
    """Namespaces, links and /etc/netns files named after the benchmark process ``pid``."""
    tag = f"{netns.PREFIX}{pid}"
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    files = os.listdir(netns.NETNS_ETC) if os.path.isdir(netns.NETNS_ETC) else []
    return [line for line in (names + links).splitlines() + files if tag in line]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    process = bench("--quick", "--out", str(out))
    try:
        output, _ = process.communicate(timeout=360)
    finally:              # a hung benchmark must not outlive its test (SIGTERM: it tears down)
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    with open(out / "paper_comparison_quick.json") as f:
        return json.load(f), out, process.pid, output


def test_quick_run_measures_every_configuration(quick):
    results, _, _, _ = quick
    assert results["machine"]["nproc"] == os.cpu_count()
    assert results["machine"]["cpu_model"] and results["machine"]["date"]
    local = {(r["config"], r["ranks"]) for r in results["runs"] if r["part"] == "local"}
    assert local == {("plain", 1), ("HYBRID", 2), ("AR", 2)}   # quick: PS on 2 machines only
    assert all(r["status"] == "ok" and r["examples_per_sec"] > 0 for r in results["runs"])
    table = {r["config"]: r for r in results["summary"]["one_machine"]}
    assert table["plain"]["vs_plain"] == 1.0
    assert table["HYBRID"]["vs_ar"] == pytest.approx(
        table["HYBRID"]["examples_per_sec"] / table["AR"]["examples_per_sec"])


@pytest.mark.skipif(NETNS is not None, reason=f"no simulated machines here: {NETNS}")
def test_bytes_between_machines_agree_with_the_cost_model(quick):
    results, _, pid, _ = quick
    rows = {r["mode"]: r for r in results["summary"]["bytes"]}
    assert set(rows) == MODES
    for mode, row in rows.items():
        assert row["predicted_sent"] > 100_000, mode   # the LM moves ~300 KB per step
        for source in ("accounted", "wire"):
            ratio = row[f"{source}_ratio"]
            assert abs(ratio - 1) <= TOLERANCE and row[f"{source}_within_20pct"], \
                (mode, source, ratio)
    # HYBRID moves fewer bytes than AR for the language model (fewer than AR's allgather).
    assert rows["HYBRID"]["wire_sent"] < rows["AR"]["wire_sent"]
    assert leftovers(pid) == []


def test_results_are_written_as_markdown_and_plots(quick):
    _, out, _, output = quick
    markdown = (out / "paper_comparison_quick.md").read_text()
    assert "| model | ranks | plain TF | HYBRID | PS | AR |" in markdown
    assert "| lm | 2 |" in markdown and markdown in output
    for name in ("paper_comparison_quick_throughput.png", "paper_comparison_quick_bytes.png"):
        if name.endswith("bytes.png") and NETNS:
            continue
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.skipif(NETNS is not None, reason=f"no simulated machines here: {NETNS}")
def test_killed_benchmark_leaves_no_namespace_or_process(tmp_path):
    process = bench("--quick", "--parts", "multihost", "--out", str(tmp_path),
                    start_new_session=True)
    tag = f"{netns.PREFIX}{process.pid}"
    deadline = time.time() + 120
    while tag not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True).stdout:
        if process.poll() is not None or time.time() > deadline:
            process.terminate()
            process.communicate(timeout=60)
            pytest.fail("no namespace appeared")
        time.sleep(0.2)
    time.sleep(3)     # Dask workers starting inside the namespaces
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143      # ended through its SIGTERM handler
    assert leftovers(process.pid) == []
    assert tagged_processes(tag) == []


def tagged_processes(tag):
    """Live processes whose command line names the simulation (scheduler, workers)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and tag in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def test_unknown_part_and_bad_link_speed_are_refused_with_the_fix():
    process = bench("--parts", "local,cloud")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "unknown part(s) ['cloud']; use local and/or multihost" in output
    with pytest.raises(ValueError, match="use a tc rate such as '100mbit' or '1gbit'"):
        netns.rate_bits("fast")


def test_profile_sorts_samples_of_the_loop_thread_into_what_it_was_doing():
    from benchmarks.profile_one_rank import OTHER, classify

    loop = "_run_module_as_main (<frozen runpy>:198);main (rank.py:70);Trainer.run (trainer.py:164)"
    stacks = {
        f"{loop};Function.__call__ (f.py:833);call_flat (f.py:1);quick_execute (e.py:53)": 6,
        f"{loop};Function.__call__ (f.py:833);trace_function (t.py:2)": 1,
        f"{loop};endless_batches (data.py:20);OwnedIterator.__next__ (i.py:9)": 2,
        f"{loop};EventWriter.send (events.py:44)": 1,
        f"{loop};_EagerTensorBase.__float__ (ops.py:1)": 1,
        f"{loop};islice (x.py:1)": 1,
        "Thread._bootstrap (threading.py:1);exit_with_parent.<locals>.watch (p.py:27)": 50,
    }
    shares = classify(stacks)
    assert shares["step function: graph execution (compute, Horovod, servers)"] == 0.5
    assert shares["step function: Python dispatch of tf.function"] == pytest.approx(1 / 12)
    assert shares["next batch (tf.data)"] == pytest.approx(2 / 12)
    assert shares["step record to the supervisor (JSON, pipe)"] == pytest.approx(1 / 12)
    assert shares["step outputs to Python numbers"] == pytest.approx(1 / 12)
    assert shares[OTHER] == pytest.approx(1 / 12)
