"""API keys: random tokens shown once, stored as sha256 hashes, compared in constant time.

A key may be scoped to learners (issue 12): `learners` lists names, and entries ending in "*" are name
prefixes ("team-a-*"); None reaches every learner. Dashboard sessions are random tokens bound to a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import InvalidInput, InvalidParameter, Unauthorized
from core.orm import ApiKey, DashboardSession, utcnow

SCOPES = ("predict", "train", "admin")
PREFIX_CHARS = 12  # "dgm_" + 8 random characters: finds the row without revealing the key
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a learner name (core.schemas.LearnerCreate)
NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\*$")  # "team-*"
MAX_LEARNER_ENTRIES = 100
BOOTSTRAP_NAME = "DGM_ADMIN_KEY (bootstrap)"  # the row that dashboard sessions of the env key point to
BOOTSTRAP_PREFIX = "(env)"  # no real key starts with this, so `authenticate` never matches the row


@dataclass(frozen=True)
class Principal:
    """Who a key is: its scopes, the learners it reaches (None: all) and its row (None: bootstrap key)."""

    scopes: tuple[str, ...]
    learners: tuple[str, ...] | None = None
    key_id: int | None = None

    def has(self, scope: str | None) -> bool:
        return scope is None or scope in self.scopes or "admin" in self.scopes

    def reaches(self, name: str) -> bool:
        return self.learners is None or any(_matches(entry, name) for entry in self.learners)

    def covers(self, learners: list[str] | tuple[str, ...] | None) -> bool:
        """Whether every learner that `learners` reaches is also reached by this key."""
        if self.learners is None:
            return True
        if learners is None:
            return False
        return all(
            any(_matches(mine, e.removesuffix("*")) and (mine.endswith("*") or not e.endswith("*"))
                for mine in self.learners)
            for e in learners
        )  # fmt: skip

    def describe(self) -> str:
        return "every learner" if self.learners is None else ", ".join(self.learners)


def _matches(entry: str, name: str) -> bool:
    return name.startswith(entry[:-1]) if entry.endswith("*") else name == entry


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def is_key(presented: str, known: str) -> bool:
    """Constant-time comparison of two keys (through their hashes, so lengths leak nothing either)."""
    return hmac.compare_digest(hash_key(presented), hash_key(known))


def check_scopes(scopes: list[str]) -> list[str]:
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise InvalidParameter(f"scopes must be a non-empty subset of {list(SCOPES)}; got {scopes}")
    return sorted(set(scopes))


def check_learners(learners: list[str] | None) -> list[str] | None:
    """A key's learner scope: learner names or name prefixes ending in '*'; None for every learner."""
    if learners is None:
        return None
    if not learners or len(learners) > MAX_LEARNER_ENTRIES:
        raise InvalidInput(
            f"learners must name 1 to {MAX_LEARNER_ENTRIES} learners or prefixes; "
            "leave it out for a key that reaches every learner"
        )
    bad = [e for e in learners if not isinstance(e, str) or not (NAME.match(e) or NAME_PREFIX.match(e))]
    if bad:
        raise InvalidInput(
            f"learners {bad[:5]!r} are not learner names or prefixes: use letters, digits, '_', '.', '-' "
            "(up to 64, starting with a letter or digit), and end a prefix with '*', e.g. 'team-a-*'"
        )
    return sorted(set(learners))


def create_key(
    session: Session, name: str, scopes: list[str], learners: list[str] | None = None
) -> tuple[ApiKey, str]:
    """Add a key row; return it with the plain key, which is never stored."""
    key = "dgm_" + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key), scopes=check_scopes(scopes),
        learners=check_learners(learners),
    )  # fmt: skip
    session.add(row)
    session.flush()
    return row, key


def principal_of(row: ApiKey) -> Principal:
    learners = tuple(row.learners) if row.learners is not None else None
    return Principal(tuple(row.scopes), learners, row.id)


BOOTSTRAP = Principal(SCOPES)


def authenticate(session: Session, key: str, admin_key: str | None) -> Principal:
    """Who presents `key`; Unauthorized when it is unknown or revoked."""
    if admin_key and is_key(key, admin_key):
        return BOOTSTRAP
    digest = hash_key(key)
    rows = session.scalars(select(ApiKey).where(ApiKey.prefix == key[:PREFIX_CHARS])).all()
    for row in rows:
        if hmac.compare_digest(digest, row.key_hash) and not row.revoked:
            return principal_of(row)
    raise Unauthorized("the API key is unknown or revoked; send a valid one as 'Authorization: Bearer <key>'")


# ----- dashboard sessions ------------------------------------------------------------------------
def _bootstrap_hash(admin_key: str) -> str:
    """What the bootstrap row stores: not sha256(key), so the row never authenticates a key itself, and
    a new DGM_ADMIN_KEY no longer matches it, which ends the old key's sessions."""
    return hash_key("dashboard-session-of:" + admin_key)


def bootstrap_row(session: Session, admin_key: str) -> ApiKey:
    """The key row that dashboard sessions of the bootstrap admin key belong to (created once)."""
    digest = _bootstrap_hash(admin_key)
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == BOOTSTRAP_PREFIX, ApiKey.key_hash == digest))
    if row is None:
        row = ApiKey(name=BOOTSTRAP_NAME, prefix=BOOTSTRAP_PREFIX, key_hash=digest, scopes=sorted(SCOPES))
        session.add(row)
        session.flush()
    return row


def start_session(session: Session, who: Principal, admin_key: str | None, ttl_s: int) -> str:
    """Add a dashboard session for `who`; return the random token for the cookie (only its hash is kept)."""
    key_id = who.key_id if who.key_id is not None else bootstrap_row(session, admin_key or "").id
    token = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=ttl_s)
    session.add(DashboardSession(key_id=key_id, token_hash=hash_key(token), expires_at=expires))
    session.flush()
    return token


def session_principal(session: Session, token: str, admin_key: str | None) -> Principal | None:
    """Who a dashboard cookie signs in: None when the session is unknown, expired or revoked, or its key is
    revoked (or, for the bootstrap key, no longer the configured one)."""
    row = session.scalar(select(DashboardSession).where(DashboardSession.token_hash == hash_key(token)))
    if row is None or row.revoked or row.expires_at <= utcnow():
        return None
    key = session.get(ApiKey, row.key_id)
    if key is None or key.revoked:
        return None
    if key.prefix == BOOTSTRAP_PREFIX:
        current = _bootstrap_hash(admin_key) if admin_key else None
        return BOOTSTRAP if current and hmac.compare_digest(current, key.key_hash) else None
    return principal_of(key)


def end_session(session: Session, token: str) -> None:
    digest = hash_key(token)
    session.execute(
        update(DashboardSession).where(DashboardSession.token_hash == digest).values(revoked=True)
    )
