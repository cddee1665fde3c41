"""Dependencies: what the app holds (settings, sessions, the artifact store, the caches, the broker, the
rate limiter, the metrics) as typed `Annotated` aliases, a database session per request, API-key scopes
and learner scope.

A route declares what it uses (`store: StoreDep`, `sessions: SessionsDep`) and hands its helpers just
that; neither takes the whole `Request` to reach `app.state`. A route takes `Request` only for what the
request itself carries (its body, headers, cookies or query string).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import Forbidden, Unauthorized
from core.keys import BOOTSTRAP, Principal, authenticate, is_key
from core.orm import Job, Learner
from core.settings import Settings
from core.storage import ArtifactStore
from service.classifiers import ClassifierCache
from service.limits import RateLimiter
from service.metrics import Metrics
from service.rollout import CanarySplit, Serving
from service.versions import SampleGrids
from service.views import unknown_job, unknown_learner


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; routes that change things commit once, at their end."""
    with request.app.state.sessions() as session:
        yield session


# Cheap dependencies are `async def`: FastAPI runs a plain `def` dependency in the thread pool, and each
# hop costs a fraction of a millisecond per request, which the predict path should not pay.
def app_state(attr: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency returning `app.state.<attr>`: what create_app built once (service/app.py)."""

    async def get(request: Request) -> Any:
        return getattr(request.app.state, attr)

    get.__name__ = f"get_{attr}"
    return get


SettingsDep = Annotated[Settings, Depends(app_state("settings"))]
SessionDep = Annotated[Session, Depends(get_db)]
# the session factory, for work in the thread pool that opens short sessions of its own
SessionsDep = Annotated[sessionmaker[Session], Depends(app_state("sessions"))]
StoreDep = Annotated[ArtifactStore, Depends(app_state("store"))]
ClassifiersDep = Annotated[ClassifierCache, Depends(app_state("classifiers"))]
SampleGridsDep = Annotated[SampleGrids, Depends(app_state("sample_grids"))]
CanarySplitDep = Annotated[CanarySplit, Depends(app_state("canary_split"))]
RateLimiterDep = Annotated[RateLimiter, Depends(app_state("rate_limiter"))]
CeleryDep = Annotated[Celery, Depends(app_state("celery"))]
MetricsDep = Annotated[Metrics, Depends(app_state("metrics"))]
# what the predict paths use, built once per app: one resolution per call on the hot path
ServingDep = Annotated[Serving, Depends(app_state("serving"))]


def require(scope: str | None, every_learner: bool = False) -> Callable[..., Any]:
    """A dependency that admits keys holding `scope` (admin holds all; None: any valid key) and returns
    the key's `Principal` (also kept in `request.state.principal`).

    Learner scope: a key scoped to learners gets, for a learner it does not reach, the very 404 of a
    learner that does not exist. Every route whose path names a learner (`{name}`) or a job (`{job_id}`)
    is checked here, so a new route under `/v1/learners/{name}/...` is scoped without more code.
    `every_learner`: the route shows every learner at once (e.g. /metrics) and needs an unscoped key.
    """

    async def check(request: Request, settings: SettingsDep, sessions: SessionsDep) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, key = header.partition(" ")
        key = key.strip()
        if kind.lower() != "bearer" or not key:
            raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        if admin and is_key(key, admin):
            who = BOOTSTRAP  # the bootstrap key: no database round trip
        else:
            who = await run_in_threadpool(_lookup, sessions, key)
        if not who.has(scope):
            raise Forbidden(f"this API key lacks the '{scope}' scope; ask an admin for a key that has it")
        if every_learner and who.learners is not None:
            raise Forbidden(
                f"this route shows every learner; this API key reaches only {who.describe()}: "
                "use a key without a learner scope"
            )
        if who.learners is not None:
            await run_in_threadpool(check_reach, sessions, request.path_params, who)
        request.state.principal = who
        return who

    check.scope = scope  # type: ignore[attr-defined]  # read by the test that every route is guarded
    return check


def _lookup(sessions: sessionmaker[Session], key: str) -> Principal:
    with sessions() as session:
        return authenticate(session, key, None)


def check_reach(sessions: sessionmaker[Session], params: dict[str, Any], who: Principal) -> None:
    """404 (the body of an unknown learner or job) when the path `params` name a learner or job out of
    reach."""
    if "name" in params and not who.reaches(params["name"]):
        raise unknown_learner(params["name"])
    if "job_id" in params:
        try:
            job_id = int(params["job_id"])
        except ValueError:
            return  # the route's own validation answers 422
        with sessions() as session:
            name = session.scalar(
                select(Learner.name).join(Job, Job.learner_id == Learner.id).where(Job.id == job_id)
            )
        if name is not None and not who.reaches(name):
            raise unknown_job(job_id)


AnyKey = Depends(require(None))
PredictKey = Depends(require("predict"))
TrainKey = Depends(require("train"))
AdminKey = Depends(require("admin"))
EveryLearnerAdminKey = Depends(require("admin", every_learner=True))  # e.g. /metrics names every learner
Caller = Annotated[Principal, AnyKey]  # a route that filters by what the key reaches
Admin = Annotated[Principal, AdminKey]
