"""Request limits: body size per kind of route, enforced as bytes arrive; a predict rate limit per key.

The body limit is an ASGI middleware, so it holds for every route, including those whose JSON body
FastAPI reads before the route runs: a declared Content-Length above the limit is refused before a
byte is read, and a chunked body is refused as soon as the running count passes the limit.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from core.errors import PayloadTooLarge, TooManyRequests
from core.keys import hash_key
from core.settings import Settings

BULK_SUFFIXES = ("/tasks", "/predict", "/infer")  # routes that take files or image batches
OVERHEAD = 64 * 1024  # multipart boundaries and part headers on top of the payload


def body_limit(settings: Settings, method: str, path: str) -> int:
    if method == "POST" and path.rstrip("/").endswith(BULK_SUFFIXES):
        return settings.max_upload_bytes + OVERHEAD
    return settings.max_json_bytes


class BodyLimit:
    """ASGI middleware that counts request body bytes and answers 413 past the route's limit."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["method"], scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await refuse(send, f"the request body ({int(declared)} bytes) exceeds the limit of {limit} bytes")
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes; send less")
            return message

        await self.app(scope, counted, send)


async def refuse(send: Any, detail: str) -> None:
    body = json.dumps({"error": "PayloadTooLarge", "detail": f"{detail}; send less per request"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))  # the unread body must not be parsed as the next request
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """Token buckets per API key: `rate` requests per second on average, bursts of `burst`.

    In-process: with several API processes each enforces its own share. `rate` 0 turns it off.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, max(burst, 1)
        self._buckets: dict[str, tuple[float, float]] = {}  # key hash -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        if self.rate <= 0:
            return
        who, now = hash_key(key), time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[who] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise TooManyRequests(
                    f"rate limit of {self.rate:g} predictions/s per key exceeded; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self._buckets[who] = (tokens - 1, now)
            if len(self._buckets) > 10_000:  # forget idle keys so the table stays small
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
