"""Soak: a long run that loses a process every few hundred steps and recovers each time.

    python -m benchmarks.soak [--steps 2400] [--every 500] [--checkpoint-every 100]

Trains the bundled language model (20k words) in HYBRID on 2 ranks of an embedded
LocalCluster (2 simulated hosts, so server 1 is a process of its own), with checkpoints, and
kills (SIGKILL) in turn rank 1, server 1 and rank 0 each time ``every`` more steps are done.
Prints one line per restart (what was lost, at which step, resumed from which, steps redone,
seconds from the loss to the first step after it) and a summary; checks that the run
finishes, that every step is in the metrics once, and that nothing is left behind.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import tempfile
import time


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--vocab", type=int, default=20_000)
    args = parser.parse_args(argv)

    import parallax_nb as px
    from parallax_nb.examples import language_model

    program = language_model.make_program(vocab=args.vocab)
    directory = tempfile.mkdtemp(prefix="soak-ckpt-")
    kills = list(range(args.every, args.steps - args.every // 2, args.every))
    victims = ["rank 1", "server 1", "rank 0"]
    started = time.time()
    with px.connect(local=2) as cluster:
        workers = sorted({d.worker for d in cluster.devices(refresh=True)})
        cluster.label_hosts({w: f"host{i}" for i, w in enumerate(workers)})
        config = px.Config(mode="HYBRID", steps=args.steps, batch_size=32, partitions=2,
                           checkpoint_dir=directory,
                           checkpoint_every_steps=args.checkpoint_every,
                           max_restarts=len(kills), log_every=1)
        run = px.train(program, cluster=cluster, select=2, config=config)
        for i, at in enumerate(kills):
            while not run.done and (run.metrics["step"].max() if len(run.metrics) else 0) < at:
                time.sleep(0.05)
            if run.done:
                break
            victim = victims[i % len(victims)]
            pid = (run.servers_started[1]["pid"] if victim.startswith("server")
                   else run.pids[int(victim.split()[1])])
            os.kill(pid, signal.SIGKILL)
            while len(run.restarts) <= i and not run.done:   # wait for the restart to begin
                time.sleep(0.05)
        run.wait()
        seconds = time.time() - started
        frame = run.metrics
        steps_once = sorted(frame[frame["rank"] == 0]["step"]) == list(range(1, args.steps + 1))
        left = glob.glob(os.path.join(tempfile.gettempdir(), f"parallax-{run.run_id}-*"))
    shutil.rmtree(directory, ignore_errors=True)
    for r in run.restarts:
        print(f"restart {r['restart']}: {r['lost']} at step {r['at_step']}; resumed from "
              f"{r['resumed_from']}, {r['steps_lost']} step(s) redone, {r['seconds']:.1f} s")
    restarts = run.restarts
    result = {"steps": args.steps, "kills": len(kills), "restarts": len(restarts),
              "status": run.status, "seconds": round(seconds, 1),
              "steps_lost_mean": (sum(r["steps_lost"] for r in restarts) / len(restarts)
                                  if restarts else 0),
              "seconds_per_restart_mean": (sum(r["seconds"] for r in restarts) / len(restarts)
                                           if restarts else 0),
              "seconds_per_restart_max": max((r["seconds"] for r in restarts), default=0),
              "every_step_once": steps_once, "work_dirs_left": len(left)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
