"""One exception type for every mistake a user can make; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input (argument, file, model name, run directory). The message is a single line for the user."""
