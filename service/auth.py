"""API keys: creation, lookup by prefix, and the dependency that identifies the caller of a route.

A key reads `fsq_<prefix>_<secret>`. The store keeps the prefix, to find the key, and the SHA-256
of the whole key, never the key itself. A key carries 256 random bits, so an unsalted hash resists
guessing as well as a salted one. Clients send the key as `Authorization: Bearer <key>` or
`X-API-Key: <key>`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import store
from service.db import session_scope
from service.deps import SessionDep, SettingsDep
from service.errors import ApiError
from service.tables import ApiKeyRecord, utcnow

logger = logging.getLogger(__name__)

KEY_PREFIX = "fsq_"
WEBHOOK_SECRET_PREFIX = "whsec_"
PREFIX_HEX_CHARACTERS = 12
CREATE_COMMAND = "`fairsqueeze keys create --name NAME`"

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="An API key as `Authorization: Bearer <key>`."
)
header_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader", description="An API key as `X-API-Key: <key>`."
)


@dataclass(frozen=True)
class Caller:
    """The sender of a request: an API key, or no key (`key_id` None) where keys are optional."""

    key_id: str | None
    key_name: str | None = None


@dataclass(frozen=True)
class CreatedKey:
    """A new key as `fairsqueeze keys create` prints it: the only time the key text is available."""

    record: ApiKeyRecord
    key: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def split_key(key: str) -> str | None:
    """Return the lookup prefix of a key, or None when the text does not have the key format."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, separator, secret = key[len(KEY_PREFIX) :].partition("_")
    if not separator or len(prefix) != PREFIX_HEX_CHARACTERS or not secret:
        return None
    return prefix


def create_api_key(database_url: str, *, name: str) -> CreatedKey:
    """Create and store a key named `name` with its own webhook secret; return the key text once."""
    name = name.strip()
    if not name:
        raise ValueError("the key name is empty; give a name that identifies who uses the key, for example ci-main")
    prefix = secrets.token_hex(PREFIX_HEX_CHARACTERS // 2)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        id=uuid.uuid4().hex,
        name=name[:255],
        prefix=prefix,
        key_sha256=hash_key(key),
        webhook_secret=f"{WEBHOOK_SECRET_PREFIX}{secrets.token_urlsafe(32)}",
        created_at=utcnow(),
    )
    with session_scope(database_url) as session:
        store.add_api_key(session, key=record)
    logger.info("API key %s (%s) created with prefix %s", record.id, record.name, prefix)
    return CreatedKey(record=record, key=key)


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, headers={"WWW-Authenticate": 'Bearer realm="fairsqueeze"'})


def _presented_key(
    request: Request, bearer: HTTPAuthorizationCredentials | None, header_key: str | None
) -> str | None:
    if bearer is not None and bearer.credentials:
        return bearer.credentials.strip()
    if header_key:
        return header_key.strip()
    if request.headers.get("authorization"):
        raise _unauthorized(
            "header Authorization: expected 'Bearer <key>'; send the API key as `Authorization: Bearer <key>` "
            "or `X-API-Key: <key>`"
        )
    return None


def authenticate(session: Session, *, key: str) -> ApiKeyRecord:
    """Return the stored record of `key`; raise ApiError 401 when it is unknown or revoked."""
    prefix = split_key(key)
    record = store.find_api_key_by_prefix(session, prefix=prefix) if prefix else None
    if record is None or not hmac.compare_digest(record.key_sha256, hash_key(key)):
        logger.warning("request rejected: invalid API key (prefix %s)", prefix or "none")
        raise _unauthorized(f"invalid API key: the server has no such key; send a key printed by {CREATE_COMMAND}")
    if record.revoked_at is not None:
        logger.warning("request rejected: API key %s (%s) is revoked", record.id, record.name)
        raise _unauthorized(
            f"API key {KEY_PREFIX}{prefix}_... was revoked at {record.revoked_at.isoformat()}; "
            f"use another key (create one with {CREATE_COMMAND})"
        )
    return record


def get_caller(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    header_key: Annotated[str | None, Depends(header_scheme)],
) -> Caller:
    """Identify the caller by its API key; a request with no key is accepted unless keys are required."""
    key = _presented_key(request, bearer, header_key)
    if key is None:
        if settings.require_api_key:
            raise _unauthorized(
                "missing API key: this server requires one; send it as `Authorization: Bearer <key>` or "
                f"`X-API-Key: <key>` (create one with {CREATE_COMMAND})"
            )
        return Caller(key_id=None)
    record = authenticate(session, key=key)
    return Caller(key_id=record.id, key_name=record.name)


CallerDep = Annotated[Caller, Depends(get_caller)]
