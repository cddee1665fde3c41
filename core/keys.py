"""API keys: random tokens shown once, stored as sha256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidParameter, Unauthorized
from core.orm import ApiKey

SCOPES = ("predict", "train", "admin")
PREFIX_CHARS = 12  # "dgm_" + 8 random characters: finds the row without revealing the key


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


def create_key(session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Add a key row; return it with the plain key, which is never stored."""
    key = "dgm_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key), scopes=check_scopes(scopes))
    session.add(row)
    session.flush()
    return row, key


def authenticate(session: Session, key: str, admin_key: str | None) -> list[str]:
    """The scopes of a presented key; Unauthorized when it is unknown or revoked."""
    if admin_key and is_key(key, admin_key):
        return list(SCOPES)
    digest = hash_key(key)
    rows = session.scalars(select(ApiKey).where(ApiKey.prefix == key[:PREFIX_CHARS])).all()
    for row in rows:
        if hmac.compare_digest(digest, row.key_hash) and not row.revoked:
            return list(row.scopes)
    raise Unauthorized("the API key is unknown or revoked; send a valid one as 'Authorization: Bearer <key>'")
