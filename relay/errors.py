"""The errors nbrelay reports to people: one line each, no traceback."""


class NbrelayError(Exception):
    """A failure the user can act on; the CLI prints it as ``nbrelay: error: <message>``."""


class TokenRefused(NbrelayError):
    """The daemon answered, and refused the token: unlike no daemon at all, the fix is the
    token the client was given (``NBRELAY_TOKEN``)."""
