"""The one exception type the command line turns into a one-line message."""


class CCAError(Exception):
    """A user-facing error: the message names the file, key or item and what to do."""
