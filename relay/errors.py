"""The errors nbrelay reports to people: one line each, no traceback."""


class NbrelayError(Exception):
    """A failure the user can act on; the CLI prints it as ``nbrelay: error: <message>``."""
