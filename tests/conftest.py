import os
import sys

import cloudpickle
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import programs  # noqa: E402

# Ship the test programs by value: Dask workers and rank processes need not import `tests`.
cloudpickle.register_pickle_by_value(programs)


@pytest.fixture(scope="session")
def ipython():
    """The one test IPython shell of this pytest process: IPython's `start_ipython` makes it
    on its first call and returns None on every later one, whichever test module came first."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell
    from IPython.testing.globalipapp import start_ipython

    return start_ipython() or TerminalInteractiveShell.instance()
