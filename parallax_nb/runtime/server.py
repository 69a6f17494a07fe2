"""Entry point of a parameter-server process: ``python -m parallax_nb.runtime.server SPEC FD``.

A plain TensorFlow gRPC server (``tf.distribute.Server``, job "ps"). It holds no Python
state: ranks create the sparse partitions on it by shared name, and the chief applies the
updates there. It lives until its supervisor stops it, or dies with its Dask worker.
"""
from __future__ import annotations

import os
import sys
import traceback

from .. import tf_env
from ..events import ERROR, STARTED
from .process import start


def main(argv) -> int:
    spec, events = start(argv)
    try:
        tf = tf_env.tensorflow()
        cluster = tf.train.ClusterSpec({"ps": list(spec.addresses)})
        server = tf.distribute.Server(cluster, job_name="ps", task_index=spec.task,
                                      protocol="grpc", start=True)
        events.send(STARTED, server=spec.task, host=spec.host, pid=os.getpid(),
                    address=spec.addresses[spec.task], target=server.target)
        server.join()
        return 0
    except BaseException as exc:
        events.send(ERROR, server=spec.task, host=spec.host,
                    message=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
