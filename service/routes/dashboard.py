"""The dashboard: server-rendered HTML per learner (no JS build; a little inline JS for live progress).

How a browser authenticates, and why this way:
- `GET /dashboard...` without a valid session shows a login form (status 401) and no data. The form posts
  an API key to `POST /dashboard/login`, which checks it with the same `core.keys.authenticate` as the
  API's `require()` (hashed keys, revocation, the bootstrap admin key) and starts a dashboard session:
  a random token (`secrets.token_urlsafe(32)`) whose sha256 is stored with its key and an expiry
  (DGM_SESSION_TTL_S, 8 hours by default). The cookie carries only that token, never the key, and is
  HttpOnly (page scripts cannot read it), SameSite=Strict (other sites' requests do not carry it),
  Path=/dashboard (the JSON API never sees it) and Secure on https. A stolen cookie is no API key: `/v1`
  answers it 401. Every request re-checks the session and its key, so signing out, an admin ending the
  session (`DELETE /v1/sessions/{id}`) or revoking the key signs the browser out at once.
- A key scoped to learners sees only those on the dashboard; any other learner answers 404, as on /v1.
- The key never appears in a URL (no `?key=` in logs, history or Referer headers).
- The images, job polling and rollback the page needs are served under `/dashboard/{name}/...`, by the
  same functions as `/v1/learners/{name}/plots/*.png`, `.../samples.png`, `/v1/jobs/{id}` and
  `.../activate`, but authenticated by the cookie. The `/v1` API keeps accepting only the
  `Authorization` header, so a cookie can never be used to drive it from another site (no CSRF there).
- Rollback (the one state change) needs the admin scope and an `X-CSRF-Token` header equal to an HMAC
  of the session token that the page embeds: a forged cross-site request can neither read the page to
  learn it nor send a custom header without a CORS preflight, which this app never grants.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from core.errors import Forbidden, Unauthorized, UnknownJob
from core.fidelity import WARN_BELOW, describe
from core.gate import describe_reason
from core.keys import Principal, authenticate, end_session, session_principal, start_session
from core.lifecycle import FINISHED
from core.liveness import state_detail
from core.orm import Job
from core.schemas import JobRead, VersionRead
from core.settings import Settings
from service.charts import render_chart
from service.deps import SampleGridsDep, SessionDep, SettingsDep
from service.versions import activate_number
from service.views import get_learner, history, job_read, learner_read, reachable, unknown_learner

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")

COOKIE = "dgm_dashboard_session"
CSRF_HEADER = "x-csrf-token"


class Viewer:
    """Who is looking: the session token from the cookie and its key's principal (None: not signed in)."""

    def __init__(self, token: str | None, who: Principal | None) -> None:
        self.token, self.who = token, who

    @property
    def signed_in(self) -> bool:
        return self.who is not None

    @property
    def scopes(self) -> list[str]:
        return list(self.who.scopes) if self.who else []

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    def csrf(self) -> str:
        return csrf_token(self.token or "")


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"dgm-dashboard-csrf", hashlib.sha256).hexdigest()


def _admin_key(settings: Settings) -> str | None:
    return settings.admin_key.get_secret_value() if settings.admin_key else None


def get_viewer(request: Request, session: SessionDep, settings: SettingsDep) -> Viewer:
    """The signed-in viewer, or an anonymous one. A learner in the path that the viewer's key does not
    reach answers the 404 of a learner that does not exist, as on /v1."""
    token = request.cookies.get(COOKIE, "").strip()
    who = session_principal(session, token, _admin_key(settings)) if token else None
    if who is None:
        return Viewer(None, None)
    name = request.path_params.get("name")
    if name is not None and not who.reaches(name):
        raise unknown_learner(name)
    return Viewer(token, who)


ViewerDep = Annotated[Viewer, Depends(get_viewer)]


def signed_in(viewer: ViewerDep) -> Viewer:
    """For the dashboard's images and JSON: a JSON 401 rather than a login page."""
    if not viewer.signed_in:
        raise Unauthorized("sign in at /dashboard first: the dashboard cookie is missing, expired or revoked")
    return viewer


SignedIn = Annotated[Viewer, Depends(signed_in)]


def login_page(request: Request, next_url: str, error: str | None = None) -> HTMLResponse:
    ctx = {"next": next_url, "error": error, "signed_in": False, "scopes": []}
    return templates.TemplateResponse(request, "login.html", ctx, status_code=401)


def safe_next(next_url: str) -> str:
    """Only redirect inside the dashboard (no open redirect to another site)."""
    ok = next_url.startswith("/dashboard") and "//" not in next_url and "\\" not in next_url
    return next_url if ok else "/dashboard"


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/dashboard",
) -> Response:
    # Login CSRF: another site must not sign this browser in under a key of its choosing. Browsers say
    # where a form came from in Sec-Fetch-Site; Origin is "null" under the pages' no-referrer policy.
    origin = request.headers.get("origin", "null")
    foreign = origin != "null" and urlsplit(origin).netloc != request.headers.get("host", "")
    if foreign or request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
        raise Forbidden("sign in from the dashboard's own page; this form was posted from another site")
    key = key.strip()
    try:
        who = authenticate(session, key, _admin_key(settings)) if key else None
    except Unauthorized:
        who = None
    if who is None:
        return login_page(request, safe_next(next), "That key is unknown or revoked; paste a valid API key.")
    token = start_session(session, who, _admin_key(settings), settings.session_ttl_s)
    session.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, token, max_age=settings.session_ttl_s, path="/dashboard", httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    """End the session on the server too, so a copy of the cookie stops working as well."""
    token = request.cookies.get(COOKIE, "").strip()
    if token:
        end_session(session, token)
        session.commit()
    response = RedirectResponse("/dashboard", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


@router.get("", response_class=HTMLResponse)
def learners_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    if not viewer.signed_in:
        return login_page(request, "/dashboard")
    assert viewer.who is not None
    learners = [learner_read(session, lr) for lr in reachable(session, viewer.who)]
    ctx = {"learners": learners, "signed_in": True, "scopes": viewer.scopes}
    return templates.TemplateResponse(request, "learners.html", ctx)


@router.get("/{name}", response_class=HTMLResponse)
def learner_page(
    name: str, request: Request, session: SessionDep, settings: SettingsDep, viewer: ViewerDep
) -> Response:
    if not viewer.signed_in:
        return login_page(request, f"/dashboard/{quote(name)}")
    ctx = page_context(history(session, get_learner(session, name)))
    ctx.update(signed_in=True, scopes=viewer.scopes, is_admin=viewer.admin, csrf=viewer.csrf())
    ctx["base"] = f"/dashboard/{quote(name)}"
    for live in ctx["live_jobs"]:  # why a queued job waits (no live worker, an earlier task); JS updates it
        live["detail"] = state_detail(session, settings, session.get(Job, live["id"]))
    return templates.TemplateResponse(request, "learner.html", ctx)


def page_context(h: dict[str, Any]) -> dict[str, Any]:
    """The history, shaped for the template: timeline rows, the accuracy matrix with A_t, live jobs."""
    from service.plots import a_t

    jobs = {j.id: j for j in h["jobs"]}
    versions: list[VersionRead] = h["versions"]
    matrix = h["accuracy_matrix"]
    accuracy_rows = [r["accuracy"] for r in matrix["rows"]]
    classes = {t.ordinal: t.classes for t in h["tasks"]}
    one_class = {t.classes[0] for t in h["tasks"] if len(t.classes) == 1 and t.kind == "learn"}
    return {
        "learner": h["learner"],
        "tasks": [_task_row(t, jobs.get(t.job_id), versions) for t in h["tasks"]],
        "versions": versions,
        "fidelity": {v.number: _fidelity_rows(v, one_class) for v in versions},
        "hold_reasons": {v.number: [describe_reason(r) for r in v.hold_reasons or []] for v in versions},
        "warn_below": WARN_BELOW,
        "matrix_tasks": [{"ordinal": o, "classes": classes.get(o, [])} for o in matrix["tasks"]],
        "matrix_rows": [
            {"version": r["version"], "accuracy": r["accuracy"], "a_t": at}
            for r, at in zip(matrix["rows"], a_t(accuracy_rows), strict=True)
        ],
        "has_accuracy": any(a is not None for row in accuracy_rows for a in row),
        "live_jobs": [_live(j, h["tasks"]) for j in h["jobs"] if j.state not in FINISHED],
    }


def _task_row(task: Any, job: JobRead | None, versions: list[VersionRead]) -> dict[str, Any]:
    took = None
    if job and job.started_at and job.finished_at:
        took = f"{(job.finished_at - job.started_at).total_seconds():.1f} s"
    return {
        **task.model_dump(),
        "uploaded": _when(task.created_at),
        "job": job,
        "started": _when(job.started_at) if job else "",
        "took": took or "",
        "versions": [f"v{v.number}" for v in versions if v.task_id == task.id],
    }


def _fidelity_rows(version: VersionRead, one_class: set[str]) -> dict[str, Any] | None:
    """The version's classes with their memory fidelity, those below WARN_BELOW flagged; None if unknown."""
    if version.fidelity is None:
        return None
    rows = [
        {
            "name": c,
            "value": f,
            "text": describe(f, c in one_class),
            "low": f is not None and f < WARN_BELOW,
        }
        for c, f in ((c, version.fidelity.get(c)) for c in version.classes)
    ]
    return {"rows": rows, "low": [r["name"] for r in rows if r["low"]]}


def _live(job: JobRead, tasks: list[Any]) -> dict[str, Any]:
    p = job.progress or {}
    ordinal = next((t.ordinal for t in tasks if t.id == job.task_id), "?")
    percent = round(100 * p["step"] / p["total"], 1) if p.get("total") else 0
    return {"id": job.id, "task": ordinal, "state": job.state, "percent": percent, "detail": ""}


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


@router.get("/{name}/plots/{kind}.png", response_class=Response)
def dashboard_plot(name: str, kind: str, session: SessionDep, _viewer: SignedIn) -> Response:
    return Response(render_chart(session, name, kind), media_type="image/png", headers=_private())


@router.get("/{name}/versions/{number}/samples.png", response_class=Response)
async def dashboard_samples(
    name: str,
    number: int,
    grids: SampleGridsDep,
    _viewer: SignedIn,
) -> Response:
    png = await run_in_threadpool(grids.png, name, number)
    return Response(png, media_type="image/png", headers=_private())


@router.get("/{name}/jobs/{job_id}", response_model=JobRead)
def dashboard_job(
    name: str, job_id: int, session: SessionDep, settings: SettingsDep, _viewer: SignedIn
) -> Any:
    learner = get_learner(session, name)
    job = session.get(Job, job_id)
    if job is None or job.learner_id != learner.id:  # one answer: another learner's job is not revealed
        raise UnknownJob(f"learner {name!r} has no job {job_id}; its page lists its jobs")
    return job_read(settings, session, job)


@router.post("/{name}/versions/{number}/activate", response_model=VersionRead)
def dashboard_activate(
    name: str, number: int, request: Request, session: SessionDep, viewer: SignedIn
) -> VersionRead:
    if not viewer.admin:
        raise Forbidden("rolling back needs a key with the admin scope; sign in with an admin key")
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), viewer.csrf().encode()):  # bytes: non-ASCII headers too
        raise Forbidden("missing or wrong X-CSRF-Token header; use the button on the dashboard page")
    return activate_number(session, name, number)


def _private() -> dict[str, str]:
    return {"Cache-Control": "private, no-store"}
