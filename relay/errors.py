"""The errors nbrelay reports to people: one line each, no traceback."""

#: What to do when no daemon runs, in the one wording that the kernel, its log and the CLI
#: share: where jupyter-server-proxy is installed, JupyterLab's launcher starts one too.
START_HINT = (
    "start it with `nbrelay serve --detach` (or, with jupyter-server-proxy, the nbrelay tile "
    "in JupyterLab's launcher)"
)


class NbrelayError(Exception):
    """A failure the user can act on; the CLI prints it as ``nbrelay: error: <message>``."""


class TokenRefused(NbrelayError):
    """The daemon answered, and refused the token: unlike no daemon at all, the fix is the
    token the client was given (``NBRELAY_TOKEN``)."""
