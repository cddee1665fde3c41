"""Prometheus metrics: one registry per app (tests build several apps in one process).

In-process figures (requests, predictions, classifier cache) are counted as they happen. Figures owned
by other processes (jobs, the queue, training step time: the worker is another process) are read from
the database, and from Redis when it is the broker, at scrape time by a custom collector, so every API
replica reports the same truth and nothing is lost when a process restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.gate import held_by
from core.lifecycle import JobState
from core.liveness import workers
from core.orm import Job, Learner, ModelVersion

log = logging.getLogger(__name__)

JOB_STATES = tuple(JobState)
UNMATCHED = "<unmatched>"  # requests no route matched: one label value, so random paths add no series
# Celery's Redis transport keeps one list per priority step; unprioritised messages go to the first.
REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The app's registry and the metrics the request path updates."""

    def __init__(self, state: Any) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dgm_http_requests",
            "HTTP requests by method, route template and status code",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dgm_http_request_duration_seconds",
            "HTTP request latency by method, route template and status code (until the last body byte)",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "dgm_predictions",
            "images classified, by learner and model version (v1 predict and v2 infer)",
            ["learner", "version"],
            registry=self.registry,
        )
        self.answers = Counter(
            "dgm_predict_requests",
            "predict requests answered (v1 and v2), by learner, the version that answered and why: active, "
            "candidate (a canary's share) or pinned (the request named the version)",
            ["learner", "version", "served_by"],
            registry=self.registry,
        )
        self.shadow = Counter(
            "dgm_shadow_predictions",
            "images a shadow candidate classified beside the active version, by the active version's "
            "label (class) and whether the candidate gave the same label (agree)",
            ["learner", "candidate", "class", "agree"],
            registry=self.registry,
        )
        self.registry.register(ClassifierCacheCollector(state.classifiers))
        self.registry.register(DatabaseCollector(state))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def predicted(self, learner: str, version: int, images: int) -> None:
        self.predictions.labels(learner, str(version)).inc(images)

    def answered(self, learner: str, version: int, served_by: str) -> None:
        self.answers.labels(learner, str(version), served_by).inc()

    def shadowed(self, learner: str, candidate: int, agreement: Mapping[tuple[str, bool], int]) -> None:
        """agreement: (active label, candidate agreed) -> images."""
        for (label, agree), n in agreement.items():
            self.shadow.labels(learner, str(candidate), label, "true" if agree else "false").inc(n)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): times each HTTP request and labels it by its route template.

    The router writes the matched route into the scope, so `/v1/learners/{name}/predict` is one series
    whatever the learner's name.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception that escapes the app becomes a 500 in the outer error middleware

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = (
                scope["method"] if scope["method"] in METHODS else "OTHER"
            )  # a label set clients can't grow
            self.metrics.observe(method, route, status, time.perf_counter() - start)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ClassifierCacheCollector(Collector):
    """The API's classifier LRU: hits, misses, evictions, size and capacity."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        c = self.cache
        for name, value, what in (
            ("hits", c.hits, "a request found the version's classifier loaded"),
            ("misses", c.misses, "a request had to load the classifier from the artifact store"),
            ("evictions", c.evictions, "a classifier left the cache to make room"),
        ):
            yield CounterMetricFamily(f"dgm_classifier_cache_{name}", f"times {what}", value=value)
        yield GaugeMetricFamily("dgm_classifier_cache_size", "classifiers loaded in this process", len(c))
        yield GaugeMetricFamily("dgm_classifier_cache_capacity", "classifiers this process keeps", c.size)


class DatabaseCollector(Collector):
    """Read at scrape time: jobs by state, queue depth, and the worker's step time from job progress."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._redis: Any = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dgm_database_up", "1 when the scrape could read the database")
        try:
            with self.state.sessions() as s:
                counts = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
                last = last_jobs(s)
                held = held_versions(s)
                alive = workers(s, self.state.settings, self.state.settings.queue).alive
        except Exception as exc:  # noqa: BLE001 - a scrape reports the outage instead of failing
            log.warning("metrics: cannot read the database: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("dgm_jobs", "training jobs by state (database)", labels=["state"])
        for state in sorted(set(JOB_STATES) | set(counts)):
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        queued = counts.get(JobState.QUEUED, 0)
        yield GaugeMetricFamily("dgm_queue_depth_jobs", "jobs waiting for a worker (state queued)", queued)
        yield GaugeMetricFamily(
            "dgm_workers_alive",
            "training workers of this queue whose heartbeat is within DGM_WORKER_ALIVE_S (0: uploads wait)",
            alive,
        )
        yield from self._step_time(last)
        yield held_metric(held)
        depth = self._broker_depth()
        if depth is not None:
            yield GaugeMetricFamily(
                "dgm_broker_queue_messages",
                "messages in the Redis list of the job queue (delayed re-enqueues wait inside workers and "
                "are not counted)",
                depth,
            )

    def _step_time(self, last: list[tuple[str, dict[str, Any]]]) -> Iterator[Metric]:
        step = GaugeMetricFamily(
            "dgm_training_last_job_mean_step_seconds",
            "mean seconds per training step of the learner's last succeeded job, as its worker reported",
            labels=["learner"],
        )
        seconds = GaugeMetricFamily(
            "dgm_training_last_job_seconds",
            "seconds of training of the learner's last succeeded job, as its worker reported",
            labels=["learner"],
        )
        for learner, progress in last:
            steps, elapsed = progress.get("step"), progress.get("elapsed_s")
            if steps and elapsed is not None:
                step.add_metric([learner], progress.get("step_s") or elapsed / steps)
                seconds.add_metric([learner], elapsed)
        yield step
        yield seconds

    def _broker_depth(self) -> int | None:
        """Best effort: LLEN of the queue's Redis lists; None for other brokers or when Redis is down."""
        settings = self.state.settings
        if not settings.broker_url.startswith(("redis://", "rediss://")):
            return None
        try:
            if self._redis is None:
                import redis

                self._redis = redis.Redis.from_url(settings.broker_url, socket_timeout=1)
            return sum(int(self._redis.llen(settings.queue + s)) for s in REDIS_PRIORITY_SUFFIXES)
        except Exception as exc:  # noqa: BLE001 - best effort; the database figure stays
            log.warning("metrics: cannot read the Redis queue length: %s", exc)
            return None


def held_versions(s: Any) -> dict[tuple[str, str], int]:
    """(learner name, held by "gate" or "policy") -> versions published as held (core/gate.py).

    A version keeps its hold_reasons after an admin activates it, so the count never goes down.
    """
    rows = s.execute(
        select(Learner.name, ModelVersion.hold_reasons).join(
            ModelVersion, ModelVersion.learner_id == Learner.id
        )
    ).all()
    out: dict[tuple[str, str], int] = {}
    for name, reasons in rows:
        if not reasons:  # SQL NULL, or JSON null: the JSON type stores Python None as 'null'
            continue
        key = (name, held_by(reasons))
        out[key] = out.get(key, 0) + 1
    return out


def held_metric(held: dict[tuple[str, str], int]) -> Metric:
    family = CounterMetricFamily(
        "dgm_versions_held",
        "versions published without activation, by learner and by what held them: the regression gate "
        "(gate) or the learner's policy never (policy); an admin may activate them later",
        labels=["learner", "by"],
    )
    for (name, by), n in sorted(held.items()):
        family.add_metric([name, by], n)
    return family


def last_jobs(s: Any) -> list[tuple[str, dict[str, Any]]]:
    """(learner name, progress) of each learner's most recent succeeded job."""
    succeeded = select(func.max(Job.id)).where(Job.state == JobState.SUCCEEDED)
    latest = succeeded.group_by(Job.learner_id).scalar_subquery()
    rows = s.execute(
        select(Learner.name, Job.progress)
        .join(Job, Job.learner_id == Learner.id)
        .where(Job.id.in_(latest))
        .order_by(Learner.name)
    ).all()
    return [(name, progress) for name, progress in rows if progress]
