"""Errors a user can act on. Each message says what was wrong and how to fix it."""


class ParallaxError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ProgramError(ParallaxError):
    """The user's training program (model_fn, loss_fn, dataset_fn, optimizer_fn) misbehaved."""


class ConfigError(ParallaxError, ValueError):
    """A run option has an invalid value."""


class NonFiniteError(ProgramError):
    """A rank's loss or gradients were NaN or infinite (``Config(on_nonfinite="stop")``)."""

    @classmethod
    def at(cls, rank: int, step: int, loss: float, variables, stop: bool = True
           ) -> "NonFiniteError":
        what = f"the loss is {loss}" if loss != loss or loss in (float("inf"), -float("inf")) \
            else f"the loss is finite ({loss:.6g})"
        shown = ", ".join(variables[:5]) + (f" and {len(variables) - 5} more"
                                           if len(variables) > 5 else "")
        grads = f"; gradients not finite: {shown}" if variables else ""
        then = ("The run stopped before saving this step (Config(on_nonfinite='stop'); 'warn' "
                "trains on with a note, 'ignore' skips the check). Usual causes: a learning "
                "rate too high, a log or division of zero in loss_fn, bad input rows"
                if stop else "Training goes on (Config(on_nonfinite='warn'); noted once per "
                             "rank)")
        return cls(f"non-finite values at step {step} on rank {rank}: {what}{grads}. {then}")

    @classmethod
    def elsewhere(cls, rank: int, step: int, ranks) -> "NonFiniteError":
        """What a rank whose own values were finite raises (an echo of the others')."""
        return cls(f"{ECHO_NONFINITE} {', '.join(map(str, ranks))} at step {step}; rank "
                   f"{rank} stops too, without saving the step")


ECHO_NONFINITE = "non-finite values reported by rank(s)"


class RankError(ParallaxError):
    """A rank of a run failed: which one, where, and its traceback.

    ``lost`` is True where the rank's process ended without a Python error of its own
    (killed, crashed) or its Dask worker left: what `Config.max_restarts` recovers from.
    """

    lost = False

    def __init__(self, rank: int, host: str, message: str, traceback: str = ""):
        super().__init__(rank, host, message, traceback)
        self.rank, self.host, self.message, self.traceback = rank, host, message, traceback

    def __str__(self):
        text = f"rank {self.rank} on host {self.host} failed: {self.message}"
        if self.traceback:
            text += f"\n--- traceback of rank {self.rank} ---\n{self.traceback.rstrip()}"
        return text


class RunStopped(ParallaxError):
    """The run was stopped before it finished (``run.stop()``)."""


class ServerError(ParallaxError):
    """A parameter-server process of a run died or could not start."""

    lost = False

    def __init__(self, task: int, host: str, address: str, message: str, traceback: str = ""):
        super().__init__(task, host, address, message, traceback)
        self.task, self.host, self.address = task, host, address
        self.message, self.traceback = message, traceback

    def __str__(self):
        text = (f"parameter server {self.task} ({self.address}) on host {self.host} failed: "
                f"{self.message}")
        if self.traceback:
            text += f"\n--- output of parameter server {self.task} ---\n{self.traceback.rstrip()}"
        return text
