"""User-facing errors, by kind: the CLI prints them as one line; only `service/` maps kinds to HTTP
status codes."""

import math


def first_line(err: Exception) -> str:
    """The first line of an error's message (its type's name when the message is empty)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class SerError(Exception):
    """A problem the user can fix (bad path, bad config, bad input)."""


class ConfigError(SerError):
    """Unknown or badly typed configuration value."""


class InputError(SerError):
    """A clip or request that cannot be answered as given."""


class AudioError(InputError):
    """Audio that cannot be read: missing, empty, undecodable, or with non-finite samples."""


class LimitError(AudioError):
    """Readable audio outside the accepted limits: duration, sampling rate, channels."""


class OptionError(InputError):
    """A request option that no clip could satisfy (top_k, window_s, hop_s)."""


def seconds_past(seconds: float, decimals: int, up: bool) -> str:
    """`seconds` for a message about a limit it broke, rounded away from that limit (`up` past a
    maximum, down below a minimum), so that 20.04 s over a 20-s limit never reads "20.0 s"."""
    scale = 10**decimals
    nudge = -1e-9 if up else 1e-9  # a float a hair off an exact value rounds to that value
    value = (math.ceil if up else math.floor)(seconds * scale + nudge) / scale
    return f"{value:.{decimals}f}"
