"""The one exception type for bad user input."""


class InputError(ValueError):
    """Bad input that the user must fix: the message names the file (or array) and the problem."""
