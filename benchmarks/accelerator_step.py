"""A training step of the benchmark models on an accelerator: what compute costs there.

The simulated machines of `benchmarks.scale` compute on two shared CPU cores, tens of times
slower than a GPU, so a real 1 Gbit/s link would be a small share of their step, while on a
GPU cluster it dominates. `scale` therefore slows its links by the ratio of the two compute
times: the link of the simulated host = the nominal link x (accelerator step / CPU step).
This script measures the accelerator's side: the same models (shapes, batch sizes, sampled
softmax, Adagrad with sparse row updates) written in PyTorch, since the accelerator machine
has PyTorch and CUDA but no TensorFlow. It needs nothing of parallax_nb.

    python benchmarks/accelerator_step.py --out results.json     # on a machine with a GPU

Figures: per model, the median wall time of one forward, backward and optimizer step (CUDA
events), batch as one rank of the benchmark trains, after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics

# The shapes of benchmarks.workloads.SCALE (kept in step by tests/test_benchmarks.py).
MODELS = {
    "lm": dict(vocab=300_000, dim=64, hidden=128, context=8, num_sampled=512, batch=128),
    "recommender": dict(scale=0.03, dim=16, hidden=64, dense_features=13, batch=128),
}
CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
    14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)


def language_model(torch, vocab, dim, hidden, context, num_sampled, batch, device):
    nn = torch.nn
    embedding = nn.Embedding(vocab, dim, sparse=True).to(device)
    body = nn.Linear(context * dim, hidden).to(device)
    softmax = nn.Embedding(vocab, hidden, sparse=True).to(device)   # rows of the true and
    biases = nn.Embedding(vocab, 1, sparse=True).to(device)         # the sampled words only
    sparse = [embedding.weight, softmax.weight, biases.weight]
    optimizers = [torch.optim.Adagrad(sparse, lr=0.1),
                  torch.optim.Adagrad(body.parameters(), lr=0.1)]

    def step():
        words = torch.randint(0, vocab, (batch, context), device=device)
        target = torch.randint(0, vocab, (batch,), device=device)
        sampled = torch.randint(0, vocab, (num_sampled,), device=device)
        state = torch.tanh(body(embedding(words).flatten(1)))
        classes = torch.cat([target, sampled])
        logits = state @ softmax(classes).T + biases(classes).squeeze(1)
        labels = torch.arange(batch, device=device)   # the true word is column i of row i
        descend(torch.nn.functional.cross_entropy(logits, labels), optimizers)
    return step


def recommender(torch, scale, dim, hidden, dense_features, batch, device):
    nn = torch.nn
    sizes = [max(3, int(c * scale)) if c > 1000 else c for c in CRITEO_CARDINALITIES]
    tables = nn.ModuleList(nn.Embedding(rows, dim, sparse=True) for rows in sizes).to(device)
    deep = nn.Sequential(nn.Linear(len(sizes) * dim + dense_features, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden // 2), nn.ReLU(),
                         nn.Linear(hidden // 2, 1)).to(device)
    optimizers = [torch.optim.Adagrad(tables.parameters(), lr=0.05),
                  torch.optim.Adagrad(deep.parameters(), lr=0.05)]
    rows = torch.tensor(sizes, device=device)

    def step():
        ids = (torch.rand(batch, len(sizes), device=device) * rows).long()
        numeric = torch.randn(batch, dense_features, device=device)
        labels = torch.randint(0, 2, (batch,), device=device).float()
        features = torch.cat([table(ids[:, j]) for j, table in enumerate(tables)] + [numeric], 1)
        descend(torch.nn.functional.binary_cross_entropy_with_logits(
            deep(features).squeeze(1), labels), optimizers)
    return step


def descend(loss, optimizers) -> None:
    """One optimizer step: the sparse tables' Adagrad and the dense layers' Adagrad."""
    for optimizer in optimizers:
        optimizer.zero_grad()
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def time_step(torch, step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        seconds.append(start.elapsed_time(end) / 1000)
    return statistics.median(seconds)


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)
    device = torch.device("cuda")
    builders = {"lm": language_model, "recommender": recommender}
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
               "python": platform.python_version(), "warmup": args.warmup,
               "steps": args.steps, "models": {}}
    for name, shape in MODELS.items():
        step = builders[name](torch, device=device, **shape)
        seconds = time_step(torch, step, args.warmup, args.steps)
        results["models"][name] = {"shape": shape, "seconds_per_step": seconds}
        print(f"{name}: {seconds * 1e3:.3f} ms/step on {results['device']}", flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
