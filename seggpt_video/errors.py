"""The one error type users see: a one-line message, no traceback."""


class UserError(Exception):
    """Bad input or environment, explained in one line that names the file and the problem."""
