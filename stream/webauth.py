"""Bearer-token access to the worker's HTTP views (aiohttp middleware).

``/leads/{contact_id}`` serves personal data, so with a token set every view requires
``Authorization: Bearer <token>``, except the ones probes and Prometheus call without
credentials (docs/operating.md, "The HTTP views").
"""
from __future__ import annotations

import hmac
import json
from typing import Awaitable, Callable

from aiohttp import web

#: answered without a token: liveness, readiness, metrics (nothing personal in them)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_middleware(token: str) -> Callable:
    """An aiohttp middleware that answers 401 unless the request carries ``token``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.rstrip("/") in PUBLIC_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: the token is not guessable byte by byte
            return web.Response(status=401, content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="leadpulse"'},
                                text=json.dumps({"error": "a valid 'Authorization: Bearer <token>' is required"}))
        return await handler(request)

    return require_token
