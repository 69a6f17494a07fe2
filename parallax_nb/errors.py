"""Errors a user can act on. Each message says what was wrong and how to fix it."""


class ParallaxError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ProgramError(ParallaxError):
    """The user's training program (model_fn, loss_fn, dataset_fn, optimizer_fn) misbehaved."""


class ConfigError(ParallaxError, ValueError):
    """A run option has an invalid value."""


class RankError(ParallaxError):
    """A rank of a run failed: which one, where, and its traceback."""

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
