"""API keys and dashboard sessions (admin): create keys (shown once), list, revoke; list and end sessions.

A scoped admin key (one with `learners`) sees and manages only keys that reach no further than itself,
and their sessions; it cannot create a key wider than itself.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select, update

from core.errors import Forbidden, UnknownKey, UnknownSession
from core.keys import Principal, check_learners, create_key
from core.orm import ApiKey, DashboardSession, utcnow
from core.schemas import KeyCreate, KeyCreated, KeyRead, SessionRead
from service.deps import Admin, AdminKey, SessionDep

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[AdminKey])
sessions_router = APIRouter(prefix="/v1/sessions", tags=["keys"], dependencies=[AdminKey])


@router.post("", status_code=201, response_model=KeyCreated)
def create(body: KeyCreate, session: SessionDep, who: Admin) -> KeyCreated:
    learners = check_learners(body.learners)
    if not who.covers(learners):
        wants = "every learner" if learners is None else ", ".join(learners)
        raise Forbidden(
            f"this API key reaches only the learners {who.describe()}, so it cannot create a key that "
            f"reaches {wants}; name learners inside its scope"
        )
    row, key = create_key(session, body.name, list(body.scopes), learners)
    session.commit()
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=key)


@router.get("", response_model=list[KeyRead])
def list_keys(session: SessionDep, who: Admin) -> list[ApiKey]:
    return [k for k in session.scalars(select(ApiKey).order_by(ApiKey.id)) if who.covers(k.learners)]


@router.delete("/{key_id}", response_model=KeyRead)
def revoke(key_id: int, session: SessionDep, who: Admin) -> ApiKey:
    """Revoke a key; its dashboard sessions end with it."""
    row = managed_key(session, who, key_id)
    row.revoked = True
    session.execute(update(DashboardSession).where(DashboardSession.key_id == key_id).values(revoked=True))
    session.commit()
    return row


def managed_key(session: SessionDep, who: Principal, key_id: int) -> ApiKey:
    """Key `key_id` if `who` may manage it; a key wider than `who` answers as if it did not exist."""
    row = session.get(ApiKey, key_id)
    if row is None or not who.covers(row.learners):
        raise UnknownKey(f"no API key with id {key_id}; list them with GET /v1/keys")
    return row


@sessions_router.get("", response_model=list[SessionRead])
def list_sessions(session: SessionDep, who: Admin) -> list[SessionRead]:
    """Dashboard sessions, newest first, with the key each belongs to (never the token)."""
    rows = session.execute(
        select(DashboardSession, ApiKey)
        .join(ApiKey, ApiKey.id == DashboardSession.key_id)
        .order_by(DashboardSession.id.desc())
    ).all()
    return [session_read(s, k) for s, k in rows if who.covers(k.learners)]


@sessions_router.delete("/{session_id}", response_model=SessionRead)
def revoke_session(session_id: int, session: SessionDep, who: Admin) -> SessionRead:
    """End one dashboard session: the browser holding its cookie is signed out at its next request."""
    row = session.get(DashboardSession, session_id)
    key = session.get(ApiKey, row.key_id) if row is not None else None
    if row is None or key is None or not who.covers(key.learners):
        raise UnknownSession(f"no dashboard session with id {session_id}; list them with GET /v1/sessions")
    row.revoked = True
    session.commit()
    return session_read(row, key)


def session_read(row: DashboardSession, key: ApiKey) -> SessionRead:
    out = SessionRead.model_validate(row)
    out.key_name = key.name
    out.active = not row.revoked and not key.revoked and row.expires_at > utcnow()
    return out
