"""The training loop inside a rank: the user's step, made data parallel."""
from __future__ import annotations

import itertools
import time

from ..events import INFO, STEP, EventWriter
from ..program import Program
from ..tf_env import tensorflow, trainable_variables
from ..analysis.trace import compute_loss, examples_in
from .allreduce import AllReduceSync
from .data import endless_batches, named_weights
from .spec import RankSpec


class Trainer:
    """Builds the user's model in this rank and trains it for ``config.steps`` steps."""

    def __init__(self, spec: RankSpec, program: Program, hvd, events: EventWriter):
        self.spec, self.program, self.events = spec, program, events
        self.config = spec.config
        self.sync = AllReduceSync(hvd)
        self.model = program.model()
        self.optimizer = program.optimizer()
        self.batches = endless_batches(program, spec.rank, spec.size, self.config.batch_size)
        self.first_batch = next(self.batches)
        # Build lazily created variables (subclassed models, tf.Module) without updating them.
        compute_loss(program, self.model, self.first_batch)
        self.variables = trainable_variables(self.model)
        self.sync.broadcast(self.model.variables)
        self._step = self._make_step()

    def _make_step(self):
        tf = tensorflow()
        program, model, optimizer, variables, sync = (self.program, self.model, self.optimizer,
                                                      self.variables, self.sync)

        @tf.function(reduce_retracing=True)
        def step(batch):
            with tf.GradientTape() as tape:
                loss = program.loss_fn(model, batch)
            grads = sync(tape.gradient(loss, variables))
            optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
            return loss

        return step

    def run(self) -> dict:
        spec, config = self.spec, self.config
        if spec.mode != config.mode:
            self.events.send(INFO, rank=spec.rank,
                             message=f"{config.mode} runs as {spec.mode} for this model")
        batches = itertools.chain([self.first_batch], self.batches)
        previous = time.perf_counter()
        for step_number, batch in enumerate(itertools.islice(batches, config.steps), start=1):
            loss = float(self._step(batch))
            now = time.perf_counter()
            if step_number % config.log_every == 0 or step_number == config.steps:
                examples = examples_in(batch) or 0
                elapsed = now - previous
                self.events.send(STEP, rank=spec.rank, host=spec.host, step=step_number,
                                 loss=loss, examples=examples, step_time=elapsed,
                                 examples_per_sec=examples / elapsed if elapsed > 0 else 0.0)
            previous = now
        return named_weights(self.model.variables)
