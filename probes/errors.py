"""One exception type for every mistake a user can make; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input (argument, file, model name, run directory). The message is a single line for the user."""


class TaskConfigError(UserError, ValueError):
    """A probe-task parameter is out of range (raised by ``probes.synthetic``); one line meant for the user.

    It lives here, not beside the generators, so the CLI can catch it without importing torch."""
