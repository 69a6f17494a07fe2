"""Entry point of a rank process: ``python -m parallax_nb.runtime.rank SPEC EVENTS_FD``.

Started by the rank's supervisor task in a Dask worker, with Horovod's environment set.
Reports through the events pipe; leaves rank 0's weights in the spec's result file.
"""
from __future__ import annotations

import os
import sys
import traceback

from .. import tf_env  # noqa: F401  (Keras 2 before TensorFlow)
from ..events import DONE, ERROR, STARTED, STARTUP, TOPOLOGY
from .process import exit_now, start
from .profile import StartupClock
from .result import write_weights


def configure_threads(local_size: int) -> None:
    """Share this machine's cores among its ranks (before TensorFlow starts its pools)."""
    tf = tf_env.tensorflow()
    per_rank = max(1, (os.cpu_count() or 1) // max(local_size, 1))
    tf.config.threading.set_intra_op_parallelism_threads(per_rank)
    tf.config.threading.set_inter_op_parallelism_threads(max(2, per_rank))


def init_horovod(hvd, spec):
    """``hvd.init()``, with one process set per host when local aggregation needs them;
    returns this rank's host set (the global set when the host holds every rank).

    Every rank must register the same process sets, so the decision depends only on facts
    all ranks share (never on this rank's own host).
    """
    groups = [list(g) for g in spec.host_ranks]
    wanted = (spec.servers and spec.config.local_aggregation and len(groups) > 1
              and max(len(g) for g in groups) > 1)
    if not wanted:
        hvd.init()
        return hvd.global_process_set
    sets = [hvd.ProcessSet(g) for g in groups]
    hvd.init(process_sets=sets)
    return next(s for s, g in zip(sets, groups) if spec.rank in g)


def main(argv) -> int:
    clock = StartupClock()
    spec, events = start(argv)
    events.send(STARTED, rank=spec.rank, host=spec.host, pid=os.getpid())
    clock.report = lambda done: events.send(STARTUP, rank=spec.rank, started=clock.started,
                                            phases=dict(clock.phases), done=done)
    try:
        import cloudpickle

        configure_threads(spec.local_size)
        import horovod.tensorflow as hvd

        host_set = init_horovod(hvd, spec)
        if (hvd.rank(), hvd.size()) != (spec.rank, spec.size):
            raise RuntimeError(f"Horovod placed this process as rank {hvd.rank()} of "
                               f"{hvd.size()}, expected {spec.rank} of {spec.size}")
        clock.mark("horovod")
        events.send(TOPOLOGY, rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                    local_size=hvd.local_size(), cross_rank=hvd.cross_rank(),
                    cross_size=hvd.cross_size(), host=spec.host,
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
        from .trainer import Trainer

        program = cloudpickle.loads(spec.program)
        if spec.servers:
            from .server_variables import connect_to_servers

            connect_to_servers(hvd, spec, os.environ.get("PARALLAX_ADDRESS", "127.0.0.1"),
                               on_serving=lambda: events.send(
                                   STARTED, server=spec.server_task, host=spec.host,
                                   pid=os.getpid(), address=spec.servers[spec.server_task],
                                   in_rank=spec.rank))
            clock.mark("connect")
        weights = Trainer(spec, program, hvd, events, host_set, clock).run()
        if spec.result_file:
            write_weights(spec.result_file, weights)
        events.send(DONE, rank=spec.rank)
        hvd.join()      # nobody shuts Horovod down while another rank still needs it
        hvd.shutdown()
        return 0
    except BaseException as exc:  # report everything, including KeyboardInterrupt/SystemExit
        from ..errors import NonFiniteError

        events.send(ERROR, rank=spec.rank, host=spec.host,
                    message=f"{type(exc).__name__}: {exc}",
                    traceback="" if isinstance(exc, NonFiniteError) else traceback.format_exc())
        return 1


if __name__ == "__main__":
    exit_now(main(sys.argv))
