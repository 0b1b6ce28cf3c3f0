"""Logging a browser in, as Jupyter does: once, with the token, then by an HttpOnly cookie.

The token URL that ``nbrelay`` prints carries the token in its fragment; the page posts it to
``api/login`` and drops it. The cookie holds not the token but a value derived from it, so
the browser never stores the token, and the cookie is good for as long as the token is (a
daemon restarted with a new token logs every browser out). A token holder that must not hand
the token to a page (the Jupyter server) mints a login code instead: short-lived, single use,
exchanged by the page for the same cookie.

No I/O here: the endpoints are in :mod:`nbrelay.app`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

#: Seconds a login code stays good: long enough to open a page, short enough to be useless in
#: a browser history or a log.
CODE_TTL = 60
#: Codes outstanding at once; minting more drops the oldest.
MAX_CODES = 64


def _derive(token: str, purpose: bytes) -> str:
    return hmac.new(token.encode(), purpose, hashlib.sha256).hexdigest()


class Login:
    """The cookie of one daemon's token, and its outstanding login codes."""

    def __init__(self, token: str, path: str) -> None:
        #: Two daemons on one host share the browser's cookies (ports do not separate them):
        #: each names its cookie after its token.
        self.cookie_name = "nbrelay-" + _derive(token, b"nbrelay cookie name")[:12]
        self._cookie_value = _derive(token, b"nbrelay login cookie").encode()
        self._path = path
        self._codes: OrderedDict[str, float] = OrderedDict()  # code -> expiry (monotonic)

    def cookie_ok(self, value: str | None) -> bool:
        """Whether ``value`` is this daemon's login cookie, compared in constant time."""
        return value is not None and hmac.compare_digest(value.encode(), self._cookie_value)

    def set_cookie(self) -> str:
        """The ``Set-Cookie`` header value that logs a browser in: the page's scripts cannot
        read it, other sites' requests do not carry it, and it goes only under the base URL."""
        return (
            f"{self.cookie_name}={self._cookie_value.decode()}; Path={self._path}; HttpOnly; "
            "SameSite=Strict"
        )

    def mint(self) -> str:
        """A new login code, good once within CODE_TTL seconds."""
        now = time.monotonic()
        self._expire(now)
        while len(self._codes) >= MAX_CODES:
            self._codes.popitem(last=False)
        code = secrets.token_urlsafe(32)
        self._codes[code] = now + CODE_TTL
        return code

    def redeem(self, code: str) -> bool:
        """Whether ``code`` is a code minted here, unused and unexpired; it is used up."""
        self._expire(time.monotonic())
        return self._codes.pop(code, None) is not None

    def _expire(self, now: float) -> None:
        while self._codes and next(iter(self._codes.values())) <= now:
            self._codes.popitem(last=False)
