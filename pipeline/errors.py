"""User-facing errors: the CLI prints them as one line, the service maps them to 4xx."""


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
