"""A rank or server process started before its run:
``python -m parallax_nb.runtime.warm EVENTS_FD READY_FD``.

Most of a rank's start-up is importing TensorFlow and Horovod (about 4 s of the 8 s from
``px.train`` to the first step on a 2-core machine). A Dask worker keeps such processes
waiting (`launch.warm`), with both imported and nothing initialised: no
TensorFlow context, no Horovod, no device chosen. When the next run starts there, the
supervisor sends it one line, ``{"module", "spec", "environment", "cwd"}``; it takes the run's
environment (Horovod's rendezvous, CUDA_VISIBLE_DEVICES, ...), moves into the run's work
directory and runs that module's ``main`` as a freshly started process would. A spare whose
worker goes away exits (the same watch as a rank's; one its worker had stopped while a run
started up is continued by the kernel first); one whose stdin closes exits too.
It writes a byte to READY_FD once the kernel will continue it if its worker dies (from then
on the worker may stop it), and another once imported: the worker starts its next spare
only then.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

from .process import continue_when_parent_dies, exit_now, exit_with_parent


def main(argv) -> int:
    events_fd, ready_fd = argv[1], int(argv[2])
    continue_when_parent_dies()
    exit_with_parent(os.getcwd())
    os.write(ready_fd, b"1")   # the worker may stop this process from now on (`launch.warm`)
    from .. import tf_env

    tf_env.tensorflow()
    import horovod.tensorflow  # noqa: F401  (loads Horovod's TensorFlow ops)

    os.write(ready_fd, b"1")   # the worker starts its next spare only now
    os.close(ready_fd)

    line = sys.stdin.readline()
    if not line:          # the worker let this spare go unused
        return 0
    order = json.loads(line)
    os.environ.update(order["environment"])
    os.chdir(order["cwd"])
    module = importlib.import_module(order["module"])
    return module.main([order["module"], order["spec"], events_fd])


if __name__ == "__main__":
    exit_now(main(sys.argv))
