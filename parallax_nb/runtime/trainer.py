"""The training loop inside a rank: the user's single-device step, made data parallel.

Local variables (dense ones; all of them in AR mode) are replicated and synchronised with
Horovod. Variables the plan puts on the parameter servers are created there by the
variable creator of `ServerVariables` and updated through `ServerSync`.
"""
from __future__ import annotations

import contextlib
import itertools
import time

from ..analysis.trace import compute_loss, examples_in
from ..errors import NonFiniteError
from ..events import INFO, STEP, VALIDATION, EventWriter
from ..keras3 import check_one_keras, tf_variable, variable_name
from ..program import Program
from ..row_updates import LocalRowUpdates
from ..tf_env import build_optimizer, step_function, tensorflow, trainable_variables, \
    user_function
from .accounting import Accounting
from .allreduce import AllReduceSync
from .checkpoint import CheckpointPolicy, best_directory, manager, step_of, variable_key
from .health import finite_flags, nonfinite_ranks
from .data import endless_batches, named_weights
from .monitor import Monitor
from .gathers import pulled_rows
from .packed_pulls import PackedPulls, server_gradients
from .profile import StartupClock, collectives_in, phase_times, server_messages, stamp
from .server_sync import ServerSync
from .server_variables import ServerVariables, server_device
from .spec import RankSpec
from .tensorboard import ScalarWriter
from .validation import Validation, build_metrics


class Trainer:
    """Builds the user's model in this rank and trains it for ``config.steps`` steps,
    validating as the config asks (`validation`), and stopping early where it says."""

    def __init__(self, spec: RankSpec, program: Program, hvd, events: EventWriter,
                 host_set=None, clock: StartupClock = None):
        tf = tensorflow()
        self.clock = clock or StartupClock()
        self.spec, self.program, self.events, self.hvd = spec, program, events, hvd
        self.config = spec.config
        self.chief = spec.rank == 0
        self.sync = AllReduceSync(hvd, self.config.average_sparse)
        self.servers = (ServerVariables(spec.run_id, spec.placements, self.chief)
                        if spec.servers else None)
        scope = self.servers.scope() if self.servers else contextlib.nullcontext()
        self.batches = endless_batches(program, spec.rank, spec.size, self.config.batch_size,
                                       self.config.steps_per_epoch)
        # The chief creates and initialises every server variable; the other ranks only
        # take handles to them, so they build at the same time and wait for the chief (a
        # barrier) before they read a row: at once where the model is built lazily, by its
        # first call, else once built.
        waited = False
        with scope:
            self.model = program.model()
            self.first_batch = next(self.batches)
            if not _built(self.model):
                # Lazily created variables (subclassed models, tf.Module) appear at the first
                # call. Only then: an eager lookup in a partitioned server table reads the
                # whole table, which a built model never needs to do here.
                if self.servers and not self.chief:
                    self._barrier("parallax_servers_ready")
                    waited = True
                compute_loss(program, self.model, self.first_batch)
        if self.servers and not waited:
            self._barrier("parallax_servers_ready")
        self.clock.mark("model")
        self.optimizer = program.optimizer()
        check_one_keras(self.model, self.optimizer)
        on_server = self.servers.ids() if self.servers else set()
        self.local_variables = [v for v in trainable_variables(self.model)
                                if id(tf_variable(v)) not in on_server]
        self.server_sync = (ServerSync(hvd, spec, self.servers, program.optimizer, host_set)
                            if self.servers else None)
        own_server = (server_device(spec.server_task) if spec.server_task is not None
                      else None)
        remote = self.servers and any(device != own_server for v in self.servers.variables
                                      for device in v.devices())
        self.packed_pulls = (PackedPulls(self.servers.device_of, own_server)
                             if remote and self.config.pack_pulls else None)
        server_variables = self.server_sync.variables if self.server_sync else []
        self.variables = self.local_variables + server_variables
        self.replicated = [v for v in self.model.variables
                           if id(tf_variable(v)) not in on_server]
        # Sparse variables this rank holds itself (AR mode) are updated by their row rule,
        # like those on the servers: the same maths in every mode.
        sparse_names = {p.variable.name for p in spec.placements
                        if p.variable.kind == "sparse" and p.placement != "ps"}
        self.row_updates = LocalRowUpdates(
            program.optimizer(), [v for v in self.local_variables
                                  if variable_name(v) in sparse_names])
        build_optimizer(self.optimizer, [v for v in self.local_variables
                                         if not self.row_updates.covers(v)])
        self.step_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="parallax_step")
        # compile's metrics, per rank and logging window, where the loss comes with the
        # predictions (`keras_program.CompiledLoss`)
        self.train_metrics = build_metrics(
            program.metrics() if hasattr(program.loss_fn, "predictions") else None,
            self.model, self.first_batch)
        self.validation = (Validation(program, self.model, spec.rank, spec.size,
                                      self.config.batch_size, hvd, self.first_batch,
                                      self.servers.sparse_partitions() if self.servers else ())
                           if program.validation_fn is not None else None)
        self.stopping = Monitor.of("early_stopping", self.config.early_stopping)
        self.best = Monitor.of("keep_best", self.config.keep_best)
        checkpoint = self._make_checkpoint() if self.config.checkpoint_dir else None
        self.checkpoints = (manager(checkpoint, self.config.checkpoint_dir)
                            if checkpoint is not None else None)
        self.best_checkpoints = (manager(checkpoint, best_directory(self.config.checkpoint_dir), 1)
                                 if self.best is not None and self.chief else None)
        self.start_step = self._restore_and_broadcast()
        self.clock.mark("optimizer")
        self.accounting = Accounting(spec, [tf_variable(v) for v in self.local_variables],
                                     self.server_sync)
        # Where every read of another process's server travels in the packed exchanges, the
        # servers' updates announce themselves and the dense AllReduce need not wait for the
        # pushes (`server_sync`); the ranks confirm it once the step is traced (`_loop`).
        self.announcing = self.server_sync is not None and self.server_sync.may_announce
        self._step = self._make_step(self.announcing)

    # -- start ----------------------------------------------------------------------------------
    def _barrier(self, name):
        self.hvd.allreduce(tensorflow().constant(0.0), name=name)

    def _make_checkpoint(self):
        tf = tensorflow()
        server = {}
        if self.servers:
            for variable in self.servers.variables:
                for i, part in enumerate(variable.partitions):
                    server[f"{variable_key(variable.name)}.part{i}"] = part
        return tf.train.Checkpoint(
            step=self.step_counter,
            local={variable_key(variable_name(v)) + f".{i}": tf_variable(v)
                   for i, v in enumerate(self.replicated)},
            server=server, optimizer=self.optimizer, row_updates=self.row_updates.checkpointed(),
            server_optimizers=self.server_sync.checkpointed() if self.server_sync else [],
            monitors=self._monitor_variables())

    def _monitor_variables(self) -> list:
        return [v for m in (self.stopping, self.best) if m is not None for v in m.variables]

    def _restore_and_broadcast(self) -> int:
        """The chief restores the newest checkpoint; every rank then starts from rank 0's
        values (and skips the batches already trained on, to continue the same stream)."""
        if self.servers:   # every applier has initialised its slots before the chief restores
            self._barrier("parallax_slots_ready")
        if self.chief and self.checkpoints is not None:
            prefix = self.checkpoints.latest_checkpoint
            if prefix:
                self.checkpoints.checkpoint.read(prefix).expect_partial()
                self.events.send(INFO, rank=0, message=f"restored step {step_of(prefix)} "
                                                       f"from {prefix}")
        # Rank 0's replicated state goes to every rank: model variables, the dense
        # optimizer's slots (restored only on the chief) and the step.
        variables = self.optimizer.variables
        variables = variables() if callable(variables) else variables
        self.sync.broadcast([tf_variable(v) for v in self.replicated + list(variables)] +
                            self.row_updates.variables() + [self.step_counter] +
                            self._monitor_variables())
        start = int(self.step_counter.numpy())
        if start:   # the first batch (taken to build the model) was batch 1 of those
            self.batches = itertools.islice(self.batches, start - 1, None)
        return start

    def _make_step(self, announce: bool):
        """One function per step: gradients, the servers' exchange, the AllReduce, apply.
        With ``announce``, the AllReduce runs beside the pushes, and each exchange with a
        server waits for the last step's updates there instead (`server_sync`)."""
        tf = tensorflow()
        program, model, optimizer, sync = self.program, self.model, self.optimizer, self.sync
        variables, n_local = self.variables, len(self.local_variables)
        server_sync, accounting, row_updates = self.server_sync, self.accounting, self.row_updates
        counter = self.step_counter
        profile = self.config.profile or self.config.profile_every > 0   # stamps traced
        densified = {p.variable.name for p in self.spec.placements if p.dense_sync}
        densify = [i for i, v in enumerate(self.local_variables)
                   if variable_name(v) in densified]
        check_finite = self.config.on_nonfinite != "ignore"
        rank, size = self.spec.rank, self.spec.size
        loss_fn = user_function(program.loss_fn)
        train_metrics = self.train_metrics

        pulls, server_partitions = self.packed_pulls, variables[n_local:]
        tokens = server_sync.tokens if announce else None

        def forward(batch):
            if train_metrics:
                return program.loss_fn.predictions(model, batch)
            return loss_fn(model, batch)

        @step_function
        def step(batch):
            stamps = [stamp()] if profile else []

            def mark(after):   # no earlier than the phase before: the phases tile the step
                stamps.append(stamp([after, stamps[-1]]))

            with tf.GradientTape() as tape, \
                    (pulls.deferred(tape.watch, tokens) if pulls else pulled_rows()) as pulled:
                outputs = forward(batch)
            packed = pulls.lookups if pulls else []
            fetched = [lookup.rows for lookup in packed]
            if train_metrics:
                loss, y, y_pred, weight = outputs
                train_metrics.update(y, y_pred, weight)
            else:
                loss = outputs
            grads = tape.gradient(loss, variables + fetched)
            local_grads, server_grads = grads[:n_local], grads[n_local:len(variables)]
            if packed:
                server_grads = server_gradients(tf, server_partitions, server_grads, packed,
                                                grads[len(variables):])
                grads = local_grads + server_grads
            if profile:
                mark(pulled)
                mark([loss, grads])
            waits, pushed, local = [], tf.constant(0, tf.int64), tf.constant(0, tf.int64)
            if server_sync is not None:
                waits, pushed, local = server_sync.push(server_grads, announce)
                if profile:
                    mark(server_sync.collective_results)
                    mark(waits)
            elif profile:
                stamps += [stamps[-1], stamps[-1]]
            # The AllReduce after this rank's pull (announced: the tokens' order needs it, even
            # for rows the loss does not use), else after its pushes (then it is the barrier).
            with tf.control_dependencies(list(pulled) if announce else waits):
                local_grads = [_after(tf, g) for g in local_grads]
                # Not a constant: Horovod's ops are not stateful, and Grappler folds an op
                # whose inputs are constants, i.e. would run this AllReduce once while
                # optimising the graph and never again.
                barrier = tf.reshape(tf.reduce_sum(tf.cast(loss, tf.float32)), [1])
                if check_finite:   # this rank's own loss and gradients, before the exchange;
                    finite = finite_flags(tf, [loss] + list(grads))   # every rank learns
                    barrier = tf.concat([barrier, nonfinite_ranks(tf, finite, rank, size)], 0)
            synced = sync(local_grads + [barrier], densify)
            synced, barrier_done = synced[:-1], synced[-1]
            if profile:
                mark(synced)
            applied = row_updates.apply(optimizer, [(g, v) for g, v in
                                                    zip(synced, variables[:n_local])
                                                    if g is not None])
            applied.append(counter.assign_add(1))
            traffic = accounting.measure(local_grads, server_grads, synced, pushed)
            traffic["local_bytes"] = local
            if check_finite:
                traffic["finite"] = finite
            if profile:
                mark(applied)
                traffic["stamps"] = tf.stack(stamps)
            # Horovod's ops are not stateful, so one whose result nothing *reads* is dropped
            # (a control dependency on it is not enough: Grappler turns an op without data
            # consumers and without side effects into a NoOp). The barrier (in PS mode no
            # local gradient shares its AllReduce) and the local collectives of a rank that
            # does not push are therefore returned.
            keep = [barrier_done] + [w for w in waits if isinstance(w, tf.Tensor)]
            return loss, traffic, keep

        return step

    # -- the loop -------------------------------------------------------------------------------
    def run(self):
        spec, config = self.spec, self.config
        if spec.mode != config.mode:
            self.events.send(INFO, rank=spec.rank,
                             message=f"{config.mode} runs as {spec.mode} for this model")
        policy = CheckpointPolicy(config.checkpoint_every_steps, config.checkpoint_every_seconds)
        batches = itertools.chain([self.first_batch] if not self.start_step else [],
                                  self.batches)
        remaining = max(config.steps - self.start_step, 0)
        batches = itertools.islice(batches, remaining)
        board = (ScalarWriter(config.tensorboard_dir)
                 if config.tensorboard_dir and self.chief else None)
        try:
            self._loop(batches, remaining, policy, board)
        finally:
            if board is not None:
                board.close()
        return self.weights()

    def _loop(self, batches, remaining: int, policy, board) -> None:
        spec, config = self.spec, self.config
        previous = time.perf_counter()
        saved = None
        step_number = self.start_step
        for step_number in range(self.start_step + 1, self.start_step + remaining + 1):
            batch = next(batches)
            input_seconds = time.perf_counter() - previous
            if "trace" not in self.clock.phases:   # start-up: tracing apart from the first run
                self._step.get_concrete_function(batch)
                if self.announcing and not self._all_announce(batch):
                    self.announcing = False
                    self._step = self._make_step(False)
                    self._step.get_concrete_function(batch)
                self.clock.mark("trace")
                if self.packed_pulls is not None and self.packed_pulls.reason and spec.rank == 0:
                    self.events.send(INFO, rank=spec.rank, message=(
                        f"not every lookup from a server table is packed in this run: "
                        f"{self.packed_pulls.reason}"))
                previous = time.perf_counter() - input_seconds   # the step's time without it
            loss, traffic, keep = self._step(batch)
            loss = float(loss)
            finite = traffic.pop("finite", None)
            if finite is not None:   # before this step can be saved
                self._check_finite(step_number, loss, finite.numpy(), keep[0].numpy()[1:])
            now = time.perf_counter()
            if not self.clock.phases.get("first_step"):
                self.clock.mark("first_step")    # TensorFlow instantiating it, then running it
            stamps = traffic.pop("stamps", None)
            sampled = stamps is not None and self._sampled(step_number)
            if step_number % config.log_every == 0 or step_number == config.steps or sampled:
                examples = examples_in(batch) or 0
                elapsed = now - previous
                phases, started = {}, {}
                if sampled:
                    stamped = stamps.numpy()
                    phases = dict(phase_times(stamped, elapsed, input_seconds),
                                  **self._blocking(batch))
                    # when the step's graph began, on this host's clock (`launch.timeline`)
                    started = {"step_started_at": float(stamped[0])}
                speed = examples / elapsed if elapsed > 0 else 0.0
                window = self._training_metrics()
                self.events.send(STEP, rank=spec.rank, host=spec.host, step=step_number,
                                 loss=loss, examples=examples, step_time=elapsed,
                                 examples_per_sec=speed, peak_rss=peak_rss(),
                                 **{k: int(v) for k, v in traffic.items()}, **phases,
                                 **started, **window)
                if board is not None:
                    board.write(step_number, {"loss": loss, "examples_per_sec": speed,
                                              "step_time": elapsed, **scalars(window),
                                              **{f"phase/{k}": v for k, v in phases.items()
                                                 if isinstance(v, float)}})
            stop = self._validation_due(step_number) and self._validate(step_number, board)
            if self.checkpoints is not None and self.chief and policy.due(step_number):
                self._settle()
                saved = self.checkpoints.save(checkpoint_number=step_number)
            if stop:
                break
            previous = time.perf_counter()
        if self.chief:   # what follows reads the servers: the final save, the weights
            self._settle()
        if self.checkpoints is not None and self.chief and remaining and \
                (saved is None or step_of(saved) != step_number):
            self.checkpoints.save(checkpoint_number=step_number)

    def _all_announce(self, batch) -> bool:
        """Whether every rank's traced step reads other processes' servers only through its
        packed exchanges, one with every such server, so that the updates can announce
        themselves there (`server_sync`); else the lowest rank that cannot says why."""
        tf = tensorflow()
        why = self._why_not_announce(batch)
        can = self.hvd.allgather(tf.constant([int(why is None)], tf.int32),
                                 name="parallax_announce").numpy()
        if why is not None and self.spec.rank == int(list(can).index(0)):
            self.events.send(INFO, rank=self.spec.rank, message=(
                f"the dense AllReduce waits for the servers' updates in this run: {why}"))
        return bool(can.all())

    def _why_not_announce(self, batch):
        """Why this rank's traced step cannot wait for announced updates (None: it can):
        some read of another process's server would not travel in a packed exchange, or
        a server would see no exchange of this rank in a step."""
        pulls = self.packed_pulls
        if pulls is None:
            return None   # no other process's server to read
        if pulls.reason:
            return pulls.reason
        partitions = self.server_sync.variables
        remote = set(pulls.remote_devices(partitions))
        graph = self._step.get_concrete_function(batch).graph
        if reads_of(graph, [p for p in partitions if pulls.device_of(p) in remote]):
            return "a server variable is read otherwise than by a row lookup"
        missed = remote - set(pulls.lookups_per_server)
        if missed:
            return f"no row of {', '.join(sorted(missed))} is looked up in a step"
        return None

    def _settle(self) -> None:
        """Before this rank reads the servers between steps: the last step's updates are
        applied (with ``announcing``; the AllReduce made sure of it otherwise)."""
        if self.announcing:
            self.server_sync.settle()

    def _sampled(self, step_number: int) -> bool:
        """This step's phases are reported: every step with ``profile``, else one in every
        ``profile_every``, from the second (the first includes building the step)."""
        every = self.config.profile_every
        return self.config.profile or (every > 0 and step_number >= 2 and
                                       (step_number - 2) % every == 0)

    def _training_metrics(self) -> dict:
        """This rank's compiled metrics over the steps since the last logged one."""
        if not self.train_metrics:
            return {}
        values = self.train_metrics.results()
        self.train_metrics.reset()
        return values

    def _validation_due(self, step_number: int) -> bool:
        """Every ``validate_every_steps``, else at each epoch's end; and at the run's end."""
        config = self.config
        if self.validation is None:
            return False
        if step_number == config.steps:
            return True
        if config.validate_every_steps:
            return step_number % config.validate_every_steps == 0
        return bool(config.steps_per_epoch) and step_number % config.steps_per_epoch == 0

    def _validate(self, step_number: int, board) -> bool:
        """Validate (every rank), report (rank 0), keep the best checkpoint (rank 0); True
        where early stopping ends the run here (every rank decides alike)."""
        self._settle()
        values, facts = self.validation.run()
        improved = self.best.update(values, step_number) if self.best is not None else False
        if self.best_checkpoints is not None and improved:
            self.best_checkpoints.save(checkpoint_number=step_number)
        stop = False
        if self.stopping is not None:
            self.stopping.update(values, step_number)
            stop = self.stopping.should_stop and step_number < self.config.steps
        if self.chief:
            epoch = (-(-step_number // self.config.steps_per_epoch)
                     if self.config.steps_per_epoch else None)
            self.events.send(VALIDATION, rank=0, step=step_number, epoch=epoch, **values,
                             **facts, best=improved,
                             stopped=self.stopping.reason(step_number) if stop else None)
            if board is not None:
                board.write(step_number, scalars(values))
            if stop:
                self.events.send(INFO, rank=0, message=self.stopping.reason(step_number))
        return stop

    def _check_finite(self, step_number: int, loss: float, finite, ranks) -> None:
        """``finite``: this rank's flags (loss, then each gradient); ``ranks``: per rank,
        > 0 where that rank's were not all finite (from the step's AllReduce)."""
        stop = self.config.on_nonfinite == "stop"
        if stop and ranks.any():
            # Every rank stops at this step (each learnt from the step's AllReduce which ranks
            # saw non-finite values): wait until all have finished it, so that no rank's
            # server goes away under another's last exchange (with the updates announced, a
            # rank's AllReduce does not wait for its pushes) and each says why it stopped.
            self._barrier("parallax_nonfinite_stop")
        if not finite.all():
            self._nonfinite(step_number, loss, finite)
        elif stop and ranks.any():
            raise NonFiniteError.elsewhere(self.spec.rank, step_number,
                                           [r for r, bad in enumerate(ranks) if bad > 0])

    def _nonfinite(self, step_number: int, loss: float, finite) -> None:
        """A NaN or infinite loss or gradient: stop the run (raise) or note it once."""
        on_servers = {id(tf_variable(part)): f"{variable.name} (partition {i})"
                      for variable in (self.servers.variables if self.servers else [])
                      for i, part in enumerate(variable.partitions)}
        names = [on_servers.get(id(tf_variable(v))) or variable_name(v) for v in self.variables]
        stop = self.config.on_nonfinite == "stop"
        error = NonFiniteError.at(self.spec.rank, step_number, loss,
                                  [n for n, ok in zip(names, finite[1:]) if not ok], stop)
        if stop:
            raise error
        if not getattr(self, "_warned_nonfinite", False):
            self._warned_nonfinite = True
            self.events.send(INFO, rank=self.spec.rank, message=str(error))

    def _blocking(self, batch) -> dict:
        """What a step blocks on outside this process (counted once, from the traced step)."""
        if not hasattr(self, "_blocks"):
            step = self._step.get_concrete_function(batch)
            self._blocks = {
                "servers_touched": self.server_sync.remote_servers() if self.server_sync else 0,
                "server_messages": server_messages(step, self.spec.server_task),
                "collectives": collectives_in(step),
                "updates_announced": int(self.announcing)}
        return self._blocks

    def weights(self):
        """``(single-device name, value)`` of every variable, a server table partition by
        partition, produced one at a time (`runtime.result` writes each before the next).

        Only the chief's result is used, so only the chief reads the server tables back
        (their whole size, once per run); the other ranks produce nothing.
        """
        if not self.chief:
            return
        yield from named_weights(self.replicated)
        if self.servers:
            yield from self.servers.values()


def peak_rss() -> int:
    """This process's peak resident memory so far, in bytes (what the memory plan predicts
    above a TensorFlow process's baseline)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def scalars(values: dict) -> dict:
    """The values TensorBoard plots as scalars (a metric may have several values)."""
    return {k: v for k, v in values.items() if isinstance(v, float)}


def _built(model) -> bool:
    """A Keras model whose variables all exist already (functional, or built)."""
    return bool(getattr(model, "built", False)) and bool(model.trainable_variables)


READS = {"ReadVariableOp", "ResourceGather", "ResourceGatherNd"}


def reads_of(graph, variables) -> int:
    """Reads of ``variables`` made in ``graph`` itself (not inside a function it calls, as
    the packed exchanges and the pushes are)."""
    handles = {id(v.handle) for v in variables}
    inside = [internal for external, internal in graph.captures if id(external) in handles]
    return sum(op.type in READS for t in inside for op in t.consumers())


def _after(tf, grad):
    """``grad`` re-issued under the surrounding control dependencies."""
    if grad is None:
        return None
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(tf.identity(grad.values), grad.indices, grad.dense_shape)
    return tf.identity(grad)

