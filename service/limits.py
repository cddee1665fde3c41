"""Request limits: body size per kind of route, enforced as bytes arrive; quotas per API key.

The body limit is an ASGI middleware, so it holds for every route, including those whose JSON body
FastAPI reads before the route runs: a declared Content-Length above the limit is refused before a
byte is read, and a chunked body is refused as soon as the running count passes the limit.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.errors import InvalidInput, PayloadTooLarge, TooManyRequests
from core.keys import hash_key
from core.settings import Settings

log = logging.getLogger(__name__)

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


# What each quota counts, and the setting that sets it.
QUOTAS = {"predict": ("images", "DGM_PREDICT_LIMIT"), "upload": ("task uploads", "DGM_UPLOAD_LIMIT")}
RECHECK_S = 5.0  # with Redis unreachable, count in this process and try Redis again this often
REDIS_TIMEOUT_S = 0.5  # a hung Redis must not hold up predictions


class RateLimiter:
    """Quotas per API key, shared by every API process that counts in the same storage.

    `predict` counts images: a v1 predict or v2 infer call of 32 images costs 32. `upload` counts task
    uploads, 1 each, charged before the body is read (a task's training time follows the learner's
    preset more than its image count). Moving windows (the `limits` library): a refused call costs
    nothing, and a window never resets all at once. The storage is Redis in distributed mode, so every
    API replica draws on one quota, and this process's memory in embedded mode (one API process).

    Redis unreachable: fail over to counting in this process's memory, and try Redis again after
    RECHECK_S. Predictions keep being answered and each replica still refuses a key past the quota, but
    on its own count, so N replicas admit up to N times the quota until Redis answers again.
    """

    def __init__(self, settings: Settings) -> None:
        texts = {"predict": settings.predict_limit, "upload": settings.upload_limit}
        self.texts = {kind: text for kind, text in texts.items() if text}
        self.items: dict[str, RateLimitItem] = {kind: parse(text) for kind, text in self.texts.items()}
        self.uri = settings.rate_limit_uri
        self._local = MovingWindowRateLimiter(MemoryStorage(wrap_exceptions=True))
        self._shared = self._local
        if self.items and not self.uri.startswith("memory://"):
            options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
            storage = storage_from_string(
                self.uri, key_prefix=f"dgm-limits:{settings.queue}", wrap_exceptions=True, **options
            )  # the queue names the deployment: two deployments on one Redis keep separate quotas
            self._shared = MovingWindowRateLimiter(storage)
        self._down_until = 0.0  # monotonic time until which Redis is not asked
        self._lock = threading.Lock()
        self.failovers = 0  # times Redis failed and this process counted alone

    def charge(self, owner: str, kind: str, cost: int) -> None:
        """Take `cost` from the quota `kind` of `owner` (the request's API key: `identity`), or refuse: 429
        with Retry-After.

        Blocking (a Redis round trip in distributed mode): call it from the thread pool.
        """
        item = self.items.get(kind)
        if item is None or cost <= 0:
            return
        what, setting = QUOTAS[kind]
        if cost > item.amount:
            raise InvalidInput(
                f"this call has {cost} {what}, more than the whole quota of {item.amount} {what} per "
                f"{window(item)} per API key ({setting}={self.texts[kind]}); "
                f"send at most {item.amount} per call"
            )
        who = (kind, owner)
        limiter = self._limiter()
        try:
            allowed = limiter.hit(item, *who, cost=cost)
        except StorageError as exc:
            limiter = self._fail_over(exc)
            allowed = limiter.hit(item, *who, cost=cost)
        if not allowed:
            left, wait = self._stats(limiter, item, who)
            raise TooManyRequests(
                f"rate limit of {item.amount} {what} per {window(item)} per API key exceeded "
                f"({setting}={self.texts[kind]}): {left} left in the window and this call has {cost}; "
                f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    async def charge_async(self, owner: str, kind: str, cost: int) -> None:
        """`charge` from the event loop: in the thread pool when it may wait on Redis."""
        if kind not in self.items:
            return
        if self._shared is self._local:
            self.charge(owner, kind, cost)  # memory: no I/O
        else:
            await run_in_threadpool(self.charge, owner, kind, cost)

    def _limiter(self) -> MovingWindowRateLimiter:
        return self._local if time.monotonic() < self._down_until else self._shared

    def _fail_over(self, exc: Exception) -> MovingWindowRateLimiter:
        with self._lock:
            if time.monotonic() >= self._down_until:
                self.failovers += 1
                log.warning(
                    "rate limit storage %s unreachable (%s): this API process counts quotas alone for "
                    "%.0f s, so each replica admits the whole quota",
                    self.uri.split("@")[-1],  # no password in the log
                    exc,
                    RECHECK_S,
                )
            self._down_until = time.monotonic() + RECHECK_S
        return self._local

    def _stats(self, limiter: MovingWindowRateLimiter, item: RateLimitItem, who: tuple[str, str]) -> tuple:
        """(what is left in the window, seconds until its oldest entry frees: at least 1)."""
        try:
            reset, left = limiter.get_window_stats(item, *who)
        except StorageError:
            return 0, item.get_expiry()
        return max(left, 0), max(1, math.ceil(reset - time.time()))


def identity(request: Request) -> str:
    """Whom a quota belongs to: the API key (hashed; the routes that charge all require one)."""
    _, _, key = request.headers.get("authorization", "").partition(" ")
    return hash_key(key.strip())


def window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
