"""The one exception type that the CLI turns into a one-line `ERROR (xvjax CMD): ...` and exit 1."""


class XvjaxError(Exception):
    """Bad input or a failed operation, described in one line naming the file/key and the problem."""
