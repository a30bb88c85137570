"""The one exception of the HTTP server: a request it refuses, with a status and a message for the client.

Raised wherever a request is read (:mod:`shoal.serving.endpoint`, :mod:`shoal.serving.multipart`, the admin
routes) and turned into ``{"detail": message}`` in one place per way in (:meth:`PredictEndpoint.answer
<shoal.serving.endpoint.PredictEndpoint.answer>`, the app's exception handler).
"""

from __future__ import annotations

__all__ = ["ServeError"]


class ServeError(Exception):
    """A request the server refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
