"""Errors that reach the user as one paragraph and an exit code, never as a traceback."""


class DistrlError(Exception):
    """A problem the user can fix: bad input, a missing file, an unreachable cluster.

    The message must say what was wrong, what was expected, and how to fix it.
    """

    exit_code = 1


class ConfigError(DistrlError):
    """An unknown config key, a value of the wrong type, or an out-of-range value."""

    exit_code = 2


class CheckpointError(DistrlError):
    """A checkpoint that is missing, unreadable or written by an incompatible version."""

    exit_code = 2


class EnvironmentNotAvailable(DistrlError):
    """An env id nobody registered, a family whose package is missing, or a missing ROM."""

    exit_code = 2


class VideoError(DistrlError):
    """A video distrl cannot write: a file format it does not know, or moviepy missing."""

    exit_code = 2


class EnvContractError(DistrlError):
    """An environment broke a rule distrl relies on (an ``info["episode_metrics"]`` that is
    not a mapping of names to numbers). Every episode would break it again, so the run stops
    at once rather than replacing the worker."""

    exit_code = 2
