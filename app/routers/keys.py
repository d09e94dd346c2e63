"""API keys (admin scope): create, list, revoke; and usage, a key's own (any scope) or every owner's (admin)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.auth import ADMIN, PREDICT, CurrentCaller, CurrentOwner
from app.deps import SessionDep, SettingsDep
from app.keys import KeyRequestError, create_key, list_keys, revoke_key
from app.schemas import AUTH_RESPONSES, ErrorDetail, KeyCreate, KeyCreated, KeyPublic, KeysPublic, Usage, UsagePage
from app.usage import owners, usage_of

router = APIRouter(prefix="/v1", tags=["keys"], responses=AUTH_RESPONSES)


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    dependencies=[ADMIN],
    responses={
        400: {"model": ErrorDetail, "description": "the body is not readable JSON (e.g. not UTF-8)"},
        403: {"model": ErrorDetail, "description": "not an admin key, or API keys are off"},
        409: {"model": ErrorDetail, "description": "a key of that name exists"},
    },
)
def create_key_route(body: KeyCreate, session: SessionDep, caller: CurrentCaller) -> KeyCreated:
    """Create a key for an owner with a scope; the answer holds the key itself, shown this once. Only an admin
    key may: a server with keys off refuses, so that nobody turns auth on over the network (the first key comes
    from `effdet-service keys create NAME --scope admin` on the server)."""
    if caller is None:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "API keys are off on this server; create the first (admin) key on it with "
            "`effdet-service keys create NAME --scope admin`",
        )
    try:
        row, key = create_key(session, body.name, body.owner, body.scope)
    except KeyRequestError as err:
        raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
    session.commit()
    return KeyCreated(**KeyPublic.from_row(row).model_dump(), key=key)


@router.get("/keys", dependencies=[ADMIN])
def list_keys_route(session: SessionDep) -> KeysPublic:
    """Every stored key (never the keys themselves), revoked ones included."""
    rows = list_keys(session)
    return KeysPublic(items=[KeyPublic.from_row(row) for row in rows], count=len(rows))


@router.post("/keys/{name}/revoke", dependencies=[ADMIN], responses={404: {"model": ErrorDetail}})
def revoke_key_route(name: str, session: SessionDep) -> KeyPublic:
    """Revoke a key by name: its next request, on any API process, gets 401."""
    try:
        row = revoke_key(session, name)
    except KeyRequestError as err:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None
    session.commit()
    return KeyPublic.from_row(row)


@router.get("/usage", dependencies=[PREDICT])
def own_usage(session: SessionDep, settings: SettingsDep, owner: CurrentOwner) -> Usage:
    """The calling key's owner's usage: datasets, upload bytes, jobs (active ones too), models, evaluations; and
    the limits it runs under."""
    return usage_of(session, settings, owner)


@router.get("/usage/owners", dependencies=[ADMIN])
def every_usage(session: SessionDep, settings: SettingsDep) -> UsagePage:
    """Every owner's usage (admin keys only)."""
    return UsagePage(items=[usage_of(session, settings, owner) for owner in owners(session)])
