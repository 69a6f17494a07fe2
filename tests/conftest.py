import os
import signal
import sys

import cloudpickle
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import programs  # noqa: E402

# Ctrl-C raises KeyboardInterrupt in this process, as in a terminal, however the suite was
# started: a shell starts a background job (`make test &`) with SIGINT ignored, Python then
# installs no handler, and the interrupt tests (test_failures, test_partition_search) would
# see nothing while their million-step runs went on training beside every later test (and
# the Jupyter server of test_browser would inherit the ignored signal).
signal.signal(signal.SIGINT, signal.default_int_handler)

# Ship the test programs by value: Dask workers and rank processes need not import `tests`.
cloudpickle.register_pickle_by_value(programs)


@pytest.fixture(scope="session")
def ipython():
    """The one test IPython shell of this pytest process: IPython's `start_ipython` makes it
    on its first call and returns None on every later one, whichever test module came first."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython

    return start_ipython() or TerminalInteractiveShell.instance()


@pytest.fixture(scope="session")
def shared_cluster():
    """One embedded cluster (2 workers) for every test module that needs no cluster of its
    own: its start-up, and the warm spares its runs leave for the next, are paid once per
    suite, not once per module. Modules that need another shape (3 workers, 2 slots per
    worker, simulated hosts, labels) start their own."""
    import parallax_nb as px

    with px.connect(local=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster(shared_cluster):
    """The shared cluster for one module; at the module's end, no rank or server of its runs
    is left (the idle spares kept for the next run are not theirs)."""
    from cluster_tools import cluster_children, wait_until_gone

    yield shared_cluster
    assert wait_until_gone([p.pid for p in cluster_children(shared_cluster)]) == []


def pytest_terminal_summary(terminalreporter):
    """Seconds per test file (setup, call and teardown together), slowest first: the suite
    has a budget (25 minutes on 2 cores), and this table says which file spends it."""
    import collections

    seconds, counts = collections.Counter(), collections.Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) in ("setup", "call", "teardown"):
                path = report.nodeid.split("::")[0]
                seconds[path] += report.duration
                counts[path] += report.when == "call"
    if not seconds:
        return
    terminalreporter.write_sep("=", "seconds per test file")
    for path, total in seconds.most_common():
        terminalreporter.write_line(f"{total:8.1f} s  {counts[path]:4d} tests  {path}")
    terminalreporter.write_line(f"{sum(seconds.values()):8.1f} s  total")
