"""A parallax_nb training run that goes on beside the test suite (`make test-beside-a-run`).

The suite's tests must tolerate neighbours (#27): each checks what its own run left, and the
product's clean-ups (stale work folders, spares, killed process groups) never touch another
cluster's. This script is the neighbour: a HYBRID run (a rank and a parameter server) on its
own embedded cluster, started before the suite and trained all through it. On SIGTERM it
checks that its run is still training (it has stepped since the last look) and stops it:
exit 0 then, 1 if the run ended or stalled while the suite ran (the reason printed).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

CHECK_SECONDS = 60.0    # the run must have stepped within the last minute


def main() -> int:
    import parallax_nb as px
    import programs

    ending = []
    signal.signal(signal.SIGTERM, lambda *_: ending.append(True))
    with px.connect(local=1, spares=False) as cluster:
        run = px.train(programs.keras_embedding_program(), cluster=cluster, progress=False,
                       config=px.Config(mode="HYBRID", steps=10 ** 9, batch_size=4))
        steps, stepped = 0, time.time()
        while not ending:
            time.sleep(1.0)
            if run.done:
                print(f"neighbour: the run ended while the suite ran: {run.status}",
                      run.error or "", flush=True)
                return 1
            if len(run.metrics) > steps:
                if not steps:
                    print("neighbour: training", flush=True)
                steps, stepped = len(run.metrics), time.time()
            elif time.time() - stepped > CHECK_SECONDS:
                print(f"neighbour: no step for {CHECK_SECONDS:g} s", flush=True)
                run.stop()
                return 1
        print(f"neighbour: still training after {int(run.metrics['step'].max())} steps",
              flush=True)
        run.stop()
        return 0


if __name__ == "__main__":
    sys.exit(main())
