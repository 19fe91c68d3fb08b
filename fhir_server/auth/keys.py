"""Signing keys of the authorization server, with rotation.

One RS256 key signs access tokens and id_tokens (RS256 is what OpenID Connect requires, and
RSA signatures are cheap to verify: one verification per FHIR request).

Keys live in the `auth_keys` collection of the app's database, or, when env `DMP_KEYS_DIR` is set,
in `<DMP_KEYS_DIR>/keys.json` (mode 0600), so that several processes on one host share them.

Rotation (`KeyStore.rotate()`): a new key becomes the signing key; the previous ones stay in the
JWKS, and keep verifying, until every token they signed has expired (`retire_at + max_token_ttl`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from joserfc import jwk

SIGNING_ALG = "RS256"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class StoredKey:
    kid: str
    alg: str
    private_jwk: dict
    created: datetime
    retired_at: datetime | None = None
    drop_after: datetime | None = None

    def to_doc(self) -> dict:
        return {
            "_id": self.kid,
            "alg": self.alg,
            "private_jwk": self.private_jwk,
            "created": self.created,
            "retired_at": self.retired_at,
            "drop_after": self.drop_after,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> StoredKey:
        return cls(
            doc["_id"],
            doc["alg"],
            doc["private_jwk"],
            _aware(doc["created"]),
            _aware(doc.get("retired_at")),
            _aware(doc.get("drop_after")),
        )


def new_rsa_key(kid: str | None = None) -> StoredKey:
    kid = kid or f"rs256-{utcnow():%Y%m%d}-{uuid.uuid4().hex[:8]}"
    key = jwk.RSAKey.generate_key(
        2048, parameters={"kid": kid, "alg": SIGNING_ALG, "use": "sig"}, private=True
    )
    return StoredKey(kid, SIGNING_ALG, key.as_dict(private=True), utcnow())


class _DbBackend:
    def __init__(self, db):
        self.coll = db["auth_keys"]

    def load(self) -> list[StoredKey]:
        return [StoredKey.from_doc(d) for d in self.coll.find({})]

    def add(self, key: StoredKey) -> None:
        self.coll.insert_one(key.to_doc())

    def retire(self, kid: str, retired_at: datetime, drop_after: datetime) -> None:
        self.coll.update_one({"_id": kid}, {"$set": {"retired_at": retired_at, "drop_after": drop_after}})

    def delete(self, kid: str) -> None:
        self.coll.delete_one({"_id": kid})


class _DirBackend:
    def __init__(self, directory: str):
        self.path = Path(directory) / "keys.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return json.loads(self.path.read_text(encoding="utf-8"))

    def _write(self, docs: list[dict]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(docs, default=lambda o: o.isoformat(), indent=1), encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    @staticmethod
    def _from_json(doc: dict) -> StoredKey:
        parsed = dict(doc)
        for name in ("created", "retired_at", "drop_after"):
            if parsed.get(name):
                parsed[name] = datetime.fromisoformat(parsed[name])
        return StoredKey.from_doc(parsed)

    def load(self) -> list[StoredKey]:
        return [self._from_json(d) for d in self._read()]

    def add(self, key: StoredKey) -> None:
        with self._lock:
            docs = self._read()
            docs.append(key.to_doc())
            self._write(docs)

    def retire(self, kid: str, retired_at: datetime, drop_after: datetime) -> None:
        with self._lock:
            docs = self._read()
            for d in docs:
                if d["_id"] == kid:
                    d["retired_at"], d["drop_after"] = retired_at, drop_after
            self._write(docs)

    def delete(self, kid: str) -> None:
        with self._lock:
            self._write([d for d in self._read() if d["_id"] != kid])


class KeyStore:
    """The server's signing keys; reloaded from storage when an unknown `kid` shows up (another process rotated)."""

    RELOAD_MIN_INTERVAL = 5.0

    def __init__(self, db=None, keys_dir: str | None = None, max_token_ttl: int = 3600):
        self.backend = _DirBackend(keys_dir) if keys_dir else _DbBackend(db)
        self.max_token_ttl = max_token_ttl
        self._lock = threading.Lock()
        self._keys: dict[str, StoredKey] = {}
        self._imported: dict[str, jwk.RSAKey] = {}
        self._loaded_at = 0.0
        self.reload()
        if not self._signing_candidates():
            self.backend.add(new_rsa_key())
            self.reload()

    # ------------------------------------------------------------------ state
    def reload(self) -> None:
        with self._lock:
            now = utcnow()
            keys = {}
            for k in self.backend.load():
                if k.drop_after and k.drop_after < now:
                    self.backend.delete(k.kid)
                    continue
                keys[k.kid] = k
            self._keys = keys
            self._imported = {kid: jwk.import_key(k.private_jwk) for kid, k in keys.items()}
            self._loaded_at = time.monotonic()

    def _signing_candidates(self) -> list[StoredKey]:
        return sorted((k for k in self._keys.values() if k.retired_at is None), key=lambda k: k.created)

    @property
    def signing_key(self) -> tuple[str, jwk.RSAKey]:
        candidates = self._signing_candidates()
        if not candidates:
            self.reload()
            candidates = self._signing_candidates()
        key = candidates[-1]
        return key.kid, self._imported[key.kid]

    def verification_key(self, kid: str | None) -> jwk.RSAKey | None:
        key = self._imported.get(kid or "")
        if key is None and time.monotonic() - self._loaded_at > self.RELOAD_MIN_INTERVAL:
            self.reload()
            key = self._imported.get(kid or "")
        if key is not None:
            stored = self._keys[kid]
            if stored.drop_after and stored.drop_after < utcnow():
                return None
        return key

    def jwks(self) -> dict:
        """Public keys only: kty, n, e, kid, alg, use."""
        now = utcnow()
        keys = []
        for kid, stored in sorted(self._keys.items(), key=lambda kv: kv[1].created, reverse=True):
            if stored.drop_after and stored.drop_after < now:
                continue
            public = self._imported[kid].as_dict(private=False)
            public.update({"kid": kid, "alg": stored.alg, "use": "sig"})
            keys.append({k: public[k] for k in ("kty", "kid", "use", "alg", "n", "e")})
        return {"keys": keys}

    # ------------------------------------------------------------------ rotation
    def rotate(self) -> str:
        """Make a new signing key; retire the current ones (kept in the JWKS until their tokens expire)."""
        new = new_rsa_key()
        self.backend.add(new)
        now = utcnow()
        for old in self._signing_candidates():
            self.backend.retire(old.kid, now, now + timedelta(seconds=self.max_token_ttl + 300))
        self.reload()
        return new.kid
