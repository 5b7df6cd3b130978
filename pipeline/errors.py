"""User-facing errors: the CLI prints them as one line, the service maps them to 4xx."""

import math


def first_line(err: Exception) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class SerError(Exception):
    """A problem the user can fix (bad path, bad config, bad input)."""


class ConfigError(SerError):
    """Unknown or badly typed configuration value."""


class AudioError(SerError):
    """Audio that cannot be decoded or is outside the accepted limits."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def seconds_past(seconds: float, decimals: int, up: bool) -> str:
    """`seconds` for a message about a limit it broke, rounded away from that limit (`up` past a
    maximum, down below a minimum), so that 20.04 s over a 20-s limit never reads "20.0 s"."""
    scale = 10**decimals
    nudge = -1e-9 if up else 1e-9  # a float a hair off an exact value rounds to that value
    value = (math.ceil if up else math.floor)(seconds * scale + nudge) / scale
    return f"{value:.{decimals}f}"
