import os
import sys

import cloudpickle

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import programs  # noqa: E402

# Ship the test programs by value: Dask workers and rank processes need not import `tests`.
cloudpickle.register_pickle_by_value(programs)
