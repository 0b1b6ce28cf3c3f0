"""nbrelay: every output of a Jupyter kernel, kept even when the browser disconnects.

``%load_ext nbrelay`` loads the kernel hook (:mod:`nbrelay.kernel_hook`); the ``nbrelay``
command runs the relay daemon (:mod:`nbrelay.server`). This module imports neither the
daemon's stack (starlette, uvicorn, aiosqlite) nor anything heavy: kernels import it.
"""

from importlib.metadata import version

from .kernel_hook import load_ipython_extension, unload_ipython_extension

__version__ = version("nbrelay")
__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server's side of the notebook extension (imported by the server only)."""
    return [{"module": "nbrelay.jupyter_extension"}]
