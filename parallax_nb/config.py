"""Run options: how a program is made data parallel.

One `Config` travels from the notebook to every rank, so it holds plain values only.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Union

from .errors import ConfigError

MODES = ("HYBRID", "PS", "AR")
AUTO = "auto"
AUTO_MODE = "AUTO"   # mode="auto": chosen per cluster by the cost model and trials
PLACEMENTS = ("ps", "allreduce")
ON_NONFINITE = ("stop", "warn", "ignore")
MONITOR_MODES = ("min", "max", "auto")
DEFAULT_STEPS = 100   # steps when neither steps nor epochs is given
DEFAULT_RESTARTS = 3   # max_restarts=None with checkpoint_dir set

Partitions = Union[None, str, int, Dict[str, int]]

# Sparse variables above this size get their partition count searched (partitions="auto").
# A search launches several short trial runs (about 10-30 s each on a small machine, mostly
# process start-up), worth it only where the partition count matters: tables whose gathers,
# updates and memory dominate a server. The paper's LM1B tables are 1.6 GB each. Below the
# threshold stay the bundled language model (200k x 64 and 200k x 128 float32: 51 and 102 MB)
# and the test programs' largest table (1M x 64: 256 MB), which keep one partition per
# server, so neither `make run` nor the test suite pays for searches they do not need.
PARTITION_SEARCH_MIN_BYTES = 512 * 2**20

# Horovod settings every rank gets unless Config.horovod overrides them (README "Horovod").
HOROVOD_DEFAULTS: Dict[str, str] = {}
MEASURE_LINK = "measure"


@dataclasses.dataclass(frozen=True)
class Config:
    """Knobs of a Parallax run.

    mode: HYBRID (sparse variables on parameter servers, dense ones through Horovod
        AllReduce; the paper's default), PS (every variable on the servers), AR (every
        variable through Horovod; sparse gradients are allgathered, as plain Horovod does),
        or "auto": `px.train` picks one for the selected devices, by the bytes each moves
        and the memory each needs, and by short measured trials where the bytes are close
        (`parallax_nb.tuning.mode_search`; the run carries ``run.mode_choice``).
    steps: training steps per rank (default 100 when ``epochs`` is not given either).
    epochs, steps_per_epoch: train ``epochs`` passes over the data instead of a number of
        steps. ``steps_per_epoch`` (as in ``model.fit``) defaults to the batches of the
        *smallest* shard, counted by `px.train` on the client from ``dataset_fn(shard,
        num_shards)`` for the selected ranks (``len()``, a ``tf.data`` cardinality, or one
        pass): every rank runs the same steps, each epoch starts its shard from the top,
        and a longer shard's last batches are left out of every epoch. The run then has
        ``steps = epochs * steps_per_epoch``.
    validate_every_steps: evaluate the program's ``validation_fn`` data every N steps
        (`runtime.validation`); with ``epochs`` and no N, at the end of every epoch; always
        at the end of the run. Every rank evaluates its shard; the metrics' states are
        summed over the ranks, so each value equals one device evaluating all of it.
    early_stopping: ``{"monitor": "val_auc", "mode": "max", "patience": 3,
        "min_delta": 0.0}``: every rank stops at the validation after which the monitored
        validation value has not improved by more than ``min_delta`` for ``patience``
        validations in a row (the same decision on every rank: they see the same values).
        ``mode`` "auto" (the default) maximises names with acc, auc, precision, recall or
        f1 in them and minimises the others, as Keras' callbacks do.
    keep_best: a validation value (``"val_auc"``) or ``{"monitor": ..., "mode": ...}``:
        rank 0 keeps the checkpoint of the best validation so far in
        ``<checkpoint_dir>/best`` beside the newest ones (needs ``checkpoint_dir``);
        ``run.model(best=True)`` is that model.
    batch_size: examples per rank and step, handed to ``dataset_fn`` when it takes a
        ``batch_size`` argument (otherwise the dataset decides).
    partitions: partitions per sparse variable: "auto" (the default) searches the count for
        sparse variables larger than ``partition_search_min_bytes`` before training (see
        `parallax_nb.tuning`; the run shows "planning" during the search) and gives smaller ones one
        partition per server; an int fixes it for all of them, a dict
        ``{variable name: int}`` per variable (others: one per server), None means one per
        parameter server. Fixing it skips the search; do so when resuming from a checkpoint,
        whose partitions a new search could change.
    partition_search_min_bytes: size above which a sparse variable's partitions are
        searched under partitions="auto" (default 512 MiB; why: PARTITION_SEARCH_MIN_BYTES).
    search_warmup_steps, search_window_steps, search_window_seconds: each trial of a
        search (partitions, mode) runs this many warm-up steps (tracing, first contact with
        the servers), then times a window of at least ``search_window_steps`` steps lasting
        at least ``search_window_seconds`` (default 2 s: a window of a few milliseconds is
        ruined by one scheduling hiccup); its cost is their median step time.
    servers: parameter-server tasks; None means one per selected host.
    average_sparse: True (the default): every gradient is averaged over ranks, sparse and
        dense, in every mode: a run of N ranks with batch b trains like one device with
        batch N*b over the same examples. False: sparse gradients are summed over ranks
        (the paper's default), in every mode too.
    placement: ``{variable name: "ps" | "allreduce"}`` overrides where a variable lives
        in HYBRID (by default, where the cost model says it costs least; the analysis
        report says why for each variable).
    link: the link between machines, for placement by time (`parallax_nb.analysis.timing`):
        ``"measure"``, measured on the selected workers before the run
        (`ParallaxCluster.measure_link`, kept per cluster), or a ``px.Link`` / a dict of its
        fields; then HYBRID and AR place each table where its step costs less time, and the
        estimate recommends the fastest mode. None (the default): placement counts bytes,
        and the estimate and the `why` column give times on the documented default link
        (10 Gbit/s, 1.3 ms per round of server exchanges, 1 ms per collective). On one
        machine placement counts bytes, whatever this says.
    local_aggregation: combine the sparse gradients of all ranks on one host before they
        go to the servers, so each host sends one gradient per step.
    pack_pulls: fetch every row a step looks up from one server as one exchange (the ids of
        all its tables in one message, the rows back in one), not one exchange per lookup
        (`parallax_nb.runtime.packed_pulls`). Same values either way; False is the
        benchmarks' "before".
    overlap_allreduce: let the dense AllReduce run while the pushes travel and the servers
        apply them, where every row a step reads from another process's server comes in its
        packed exchange: that exchange then waits on the server for the last step's updates
        (`parallax_nb.runtime.server_sync`), so the AllReduce need not be the barrier. Same
        values either way; False makes the AllReduce wait for the pushes (the benchmarks'
        "before"). HYBRID only (in PS mode dense variables live on the servers, and the
        AllReduce stays the barrier). Where a lookup is gathered on its own, a server
        variable is read otherwise, or a server's rows are not looked up in every step, the
        AllReduce waits, and `run.notes` says why.
    profile: record where each step's time goes (input, pull, compute, local aggregation,
        push and update, AllReduce, apply, host; `parallax_nb.runtime.profile`) with the
        step metrics and in the run report, for every logged step. Cheap: a few timestamps
        per step.
    profile_every: without ``profile``, the phases of one step in every N (default 50;
        0: none): the run panel's live phase bars and ``run.metrics``' ``t_*`` columns of
        those steps. The timestamps are taken in every step once either is on (a sampled
        step is one whose stamps are read and sent): a few per cent of a 10 ms step,
        measured in ``benchmarks/startup.py`` (performance guide, "Start-up phases").
    warm_start: a run's processes start in the spare processes their Dask workers keep,
        with TensorFlow and Horovod imported (`launch.warm`: two per worker, started at
        ``px.connect`` for an embedded cluster, and again once a run's processes there have
        started up): a run reaches its first step seconds sooner. False: its processes start
        cold, and it starts no spares. Spares hold memory (about 0.5 GB each) until the
        worker exits or ``cluster.release_spares()``.
    on_nonfinite: what a non-finite (NaN or infinite) loss or gradient does: "stop" (the
        default) fails the run with the step, the rank and the variables whose gradients
        were not finite, before the step is checkpointed; "warn" adds a note (once per rank)
        and trains on; "ignore" does not check (a step then costs no check at all).
    max_restarts: how often a run restarts by itself after losing a rank, a parameter
        server or a Dask worker (`launch.recovery`): it resumes from the last complete
        checkpoint on the devices still available. None (the default) means 3 when
        ``checkpoint_dir`` is set; without ``checkpoint_dir`` a run never restarts (there
        is nothing to resume from) and its error says so.
    horovod: Horovod settings for the ranks, ``{"HOROVOD_CYCLE_TIME": "0.2", ...}``, over
        the SDK's defaults (`HOROVOD_DEFAULTS`, tuned for small steps; README "Horovod").
    """

    mode: str = "HYBRID"
    steps: Optional[int] = None
    epochs: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    validate_every_steps: Optional[int] = None
    early_stopping: Optional[Dict[str, object]] = None
    keep_best: Union[None, str, Dict[str, object]] = None
    batch_size: Optional[int] = None
    partitions: Partitions = AUTO
    partition_search_min_bytes: int = PARTITION_SEARCH_MIN_BYTES
    search_warmup_steps: int = 3
    search_window_steps: int = 10
    search_window_seconds: float = 2.0
    servers: Optional[int] = None
    average_sparse: bool = True
    local_aggregation: bool = True
    pack_pulls: bool = True
    overlap_allreduce: bool = True
    checkpoint_dir: Optional[str] = None
    checkpoint_every_steps: Optional[int] = None
    checkpoint_every_seconds: Optional[float] = None
    tensorboard_dir: Optional[str] = None
    log_every: int = 1
    start_timeout: float = 120.0
    profile: bool = False
    profile_every: int = 50
    warm_start: bool = True
    horovod: Optional[Dict[str, str]] = None
    placement: Optional[Dict[str, str]] = None
    link: Any = None
    on_nonfinite: str = "stop"
    max_restarts: Optional[int] = None

    def __post_init__(self):
        mode = str(self.mode).upper()
        if mode not in MODES + (AUTO_MODE,):
            raise ConfigError(f"mode={self.mode!r} is not one of {', '.join(MODES)} or "
                              f"'auto'")
        object.__setattr__(self, "mode", mode)
        if self.tensorboard_dir and "://" not in str(self.tensorboard_dir):
            # the ranks run in folders of their own: a relative path means the client's
            object.__setattr__(self, "tensorboard_dir",
                               os.path.abspath(os.path.expanduser(str(self.tensorboard_dir))))
        self._check_steps_and_epochs()
        if self.validate_every_steps is not None:
            _positive_int("validate_every_steps", self.validate_every_steps)
        if self.early_stopping is not None:
            object.__setattr__(self, "early_stopping",
                               _checked_monitor("early_stopping", self.early_stopping,
                                                {"patience": 0, "min_delta": 0.0}))
        if self.keep_best is not None:
            if not self.checkpoint_dir:
                raise ConfigError(f"keep_best={self.keep_best!r} keeps a checkpoint in "
                                  f"<checkpoint_dir>/best: set checkpoint_dir too")
            object.__setattr__(self, "keep_best", _checked_monitor("keep_best",
                                                                   self.keep_best, {}))
        _positive_int("log_every", self.log_every)
        if isinstance(self.profile_every, bool) or not isinstance(self.profile_every, int) \
                or self.profile_every < 0:
            raise ConfigError(f"profile_every must be an integer >= 0 (0: no sampled steps), "
                              f"got {self.profile_every!r}")
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        if self.servers is not None:
            _positive_int("servers", self.servers)
        if self.checkpoint_every_steps is not None:
            _positive_int("checkpoint_every_steps", self.checkpoint_every_steps)
        _positive_int("partition_search_min_bytes", self.partition_search_min_bytes)
        _positive_int("search_warmup_steps", self.search_warmup_steps)
        _positive_int("search_window_steps", self.search_window_steps)
        if isinstance(self.search_window_seconds, bool) or \
                not isinstance(self.search_window_seconds, (int, float)) or \
                not self.search_window_seconds >= 0:
            raise ConfigError(f"search_window_seconds must be a number of seconds >= 0, got "
                              f"{self.search_window_seconds!r}")
        object.__setattr__(self, "partitions", _checked_partitions(self.partitions))
        if self.on_nonfinite not in ON_NONFINITE:
            raise ConfigError(f"on_nonfinite={self.on_nonfinite!r} is not one of "
                              f"{', '.join(map(repr, ON_NONFINITE))}")
        if self.max_restarts is not None:
            if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) \
                    or self.max_restarts < 0:
                raise ConfigError(f"max_restarts must be a non-negative integer or None, got "
                                  f"{self.max_restarts!r}")
        if self.placement is not None:
            bad = {k: v for k, v in dict(self.placement).items() if v not in PLACEMENTS}
            if bad:
                raise ConfigError(f"placement={self.placement!r}: {bad} must be one of "
                                  f"{', '.join(map(repr, PLACEMENTS))}")
            object.__setattr__(self, "placement", dict(self.placement))
        if self.link is not None and self.link != MEASURE_LINK:
            from .analysis.timing import link_from

            try:
                object.__setattr__(self, "link", link_from(self.link))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{exc}; or link='measure' to measure it") from None
        if self.horovod is not None:
            bad = [k for k in self.horovod if not str(k).startswith("HOROVOD_")]
            if bad:
                raise ConfigError(f"horovod={self.horovod!r}: {bad} are not Horovod settings "
                                  f"(names start with HOROVOD_, e.g. HOROVOD_CYCLE_TIME)")
            object.__setattr__(self, "horovod", {str(k): str(v)
                                                 for k, v in self.horovod.items()})

    def _check_steps_and_epochs(self) -> None:
        if self.epochs is None:
            if self.steps_per_epoch is not None:
                raise ConfigError(f"steps_per_epoch={self.steps_per_epoch!r} needs epochs: "
                                  f"give epochs=k as well, or steps alone")
            if self.steps is None:
                object.__setattr__(self, "steps", DEFAULT_STEPS)
            _positive_int("steps", self.steps)
            return
        _positive_int("epochs", self.epochs)
        if self.steps_per_epoch is not None:
            _positive_int("steps_per_epoch", self.steps_per_epoch)
            total = self.epochs * self.steps_per_epoch
            if self.steps is None:
                object.__setattr__(self, "steps", total)
            elif self.steps != total:
                raise ConfigError(f"steps={self.steps!r} and epochs={self.epochs} x "
                                  f"steps_per_epoch={self.steps_per_epoch} disagree: give "
                                  f"steps or epochs, not both")
        elif self.steps is not None:
            raise ConfigError(f"steps={self.steps!r} and epochs={self.epochs!r}: give one of "
                              f"them (epochs counts the steps from the data)")

    @property
    def steps_known(self) -> bool:
        """False for ``epochs`` without ``steps_per_epoch`` until `px.train` counted it."""
        return self.steps is not None

    @property
    def restarts_allowed(self) -> int:
        """``max_restarts`` in effect: 3 by default when checkpointing is on, else 0."""
        if not self.checkpoint_dir:
            return 0
        return DEFAULT_RESTARTS if self.max_restarts is None else self.max_restarts

    def replace(self, **changes) -> "Config":
        """A copy with some options changed (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    def partitions_for(self, variable_name: str, servers: int, rows: int) -> int:
        """Partition count of one sparse variable: configured, else one per server.

        "auto" plans one per server too: `px.train` replaces it by the searched counts
        before anything is placed on a server.
        Never more partitions than rows (an empty partition cannot hold a shard).
        """
        wanted = self.partitions
        if isinstance(wanted, dict):
            wanted = _lookup_by_name(wanted, variable_name)
        if wanted is None or wanted == AUTO:
            wanted = servers
        return max(1, min(int(wanted), rows))


def monitor_mode(monitor: str, mode: str) -> str:
    """"min" or "max" for ``mode`` "auto" as Keras' callbacks decide it: names with acc,
    auc, precision, recall or f1 are maximised, others (losses, errors) minimised."""
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if any(word in name for word in ("acc", "auc", "precision", "recall", "f1")) \
        else "min"


def _checked_monitor(option: str, value, defaults: Dict[str, object]) -> Dict[str, object]:
    """A monitored validation value: ``"val_auc"`` or ``{"monitor": ..., ...}``."""
    if isinstance(value, str):
        value = {"monitor": value}
    if not isinstance(value, dict) or not isinstance(value.get("monitor"), str):
        raise ConfigError(f"{option}={value!r}: give a dict with a 'monitor' key naming a "
                          f"validation value, e.g. {{'monitor': 'val_auc', 'mode': 'max'}}")
    allowed = {"monitor", "mode", *defaults}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{option}: {unknown} name no option; it takes "
                          f"{', '.join(sorted(allowed))}")
    checked = {**defaults, "mode": "auto", **value}
    if not checked["monitor"].startswith("val_"):
        raise ConfigError(f"{option} monitors {checked['monitor']!r}: it watches validation "
                          f"values, which are named val_loss, val_<metric> (every rank sees "
                          f"the same ones, so every rank decides alike)")
    if checked["mode"] not in MONITOR_MODES:
        raise ConfigError(f"{option}: mode={checked['mode']!r} is not one of "
                          f"{', '.join(map(repr, MONITOR_MODES))}")
    checked["mode"] = monitor_mode(checked["monitor"], checked["mode"])
    if "patience" in checked:
        if isinstance(checked["patience"], bool) or not isinstance(checked["patience"], int) \
                or checked["patience"] < 0:
            raise ConfigError(f"{option}: patience must be an integer >= 0, got "
                              f"{checked['patience']!r}")
    if "min_delta" in checked:
        if isinstance(checked["min_delta"], bool) or \
                not isinstance(checked["min_delta"], (int, float)) or checked["min_delta"] < 0:
            raise ConfigError(f"{option}: min_delta must be a number >= 0, got "
                              f"{checked['min_delta']!r}")
        checked["min_delta"] = float(checked["min_delta"])
    return checked


def _lookup_by_name(per_variable: Dict[str, object], name: str) -> Optional[object]:
    """Match ``embedding/embeddings:0`` by its full name or without the ``:0`` suffix."""
    for key in (name, name.split(":")[0]):
        if key in per_variable:
            return per_variable[key]
    return None


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _checked_partitions(partitions):
    """The partitions option, validated ("Auto" is read as "auto")."""
    if partitions is None:
        return None
    if isinstance(partitions, dict):
        for name, count in partitions.items():
            _positive_int(f"partitions[{name!r}]", count)
        return partitions
    if isinstance(partitions, str):
        if partitions.strip().lower() == AUTO:
            return AUTO
        raise ConfigError(f"partitions={partitions!r}: use {AUTO!r} (search), an int, a dict "
                          f"per variable, or None (one per server)")
    _positive_int("partitions", partitions)
    return partitions
