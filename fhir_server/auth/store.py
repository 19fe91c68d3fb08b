"""The authorization server's collections (all prefixed `auth_`) in the app's database.

Lookups are by `_id` (hashes of opaque secrets, jti, client ids) or by one plain indexed field;
no `$elemMatch` (FerretDB 1.x). Expiry is always checked in code; TTL indexes only clean up.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from pymongo.database import Database

log = logging.getLogger(__name__)

COLLECTIONS = (
    "auth_clients",
    "auth_codes",
    "auth_grants",
    "auth_refresh",
    "auth_revoked",
    "auth_jti",
    "auth_launch",
    "auth_accounts",
    "auth_sessions",
    "auth_pending",
    "auth_attempts",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def expired(doc: dict | None, field: str = "expires_at") -> bool:
    if doc is None:
        return True
    ts = aware(doc.get(field))
    return ts is not None and ts <= utcnow()


def digest(secret: str) -> str:
    """Opaque secrets (codes, refresh tokens, session ids) are stored as their SHA-256 only."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class AuthStore:
    def __init__(self, db: Database):
        self.db = db
        self.clients = db["auth_clients"]
        self.codes = db["auth_codes"]
        self.grants = db["auth_grants"]
        self.refresh = db["auth_refresh"]
        self.revoked = db["auth_revoked"]
        self.jti = db["auth_jti"]
        self.launch = db["auth_launch"]
        self.accounts = db["auth_accounts"]
        self.sessions = db["auth_sessions"]
        self.pending = db["auth_pending"]
        self.attempts = db["auth_attempts"]
        self.ensure_indexes()

    def ensure_indexes(self) -> None:
        plain = [
            (self.accounts, "logins", True),
            (self.accounts, "fhir_user", False),
            (self.refresh, "grant_id", False),
        ]
        for coll, key, unique in plain:
            try:
                coll.create_index(key, unique=unique)
            except Exception as exc:  # pragma: no cover - index options differ across servers
                log.warning("index %s.%s: %s", coll.name, key, exc)
        for coll in (
            self.codes,
            self.refresh,
            self.revoked,
            self.jti,
            self.launch,
            self.sessions,
            self.pending,
            self.attempts,
            self.grants,
        ):
            try:
                coll.create_index("expires_at", expireAfterSeconds=0)
            except Exception as exc:  # pragma: no cover
                log.info("TTL index on %s not available: %s", coll.name, exc)

    def wipe(self) -> None:
        """Tests only."""
        for name in COLLECTIONS:
            self.db[name].delete_many({})
