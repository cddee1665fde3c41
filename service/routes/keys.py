"""API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from core.errors import UnknownKey
from core.keys import create_key
from core.orm import ApiKey
from core.schemas import KeyCreate, KeyCreated, KeyRead
from service.deps import AdminKey, SessionDep

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[AdminKey])


@router.post("", status_code=201, response_model=KeyCreated)
def create(body: KeyCreate, session: SessionDep) -> KeyCreated:
    row, key = create_key(session, body.name, list(body.scopes))
    session.commit()
    return KeyCreated(**KeyRead.model_validate(row).model_dump(), key=key)


@router.get("", response_model=list[KeyRead])
def list_keys(session: SessionDep) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


@router.delete("/{key_id}", response_model=KeyRead)
def revoke(key_id: int, session: SessionDep) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise UnknownKey(f"no API key with id {key_id}; list them with GET /v1/keys")
    row.revoked = True
    session.commit()
    return row
