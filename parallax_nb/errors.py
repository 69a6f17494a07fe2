"""Errors a user can act on. Each message says what was wrong and how to fix it."""


class ParallaxError(Exception):
    """Base class of every error the SDK raises on purpose."""


class ProgramError(ParallaxError):
    """The user's training program (model_fn, loss_fn, dataset_fn, optimizer_fn) misbehaved."""


class ConfigError(ParallaxError, ValueError):
    """A run option has an invalid value."""
