"""Registered OAuth clients (RFC 7591 metadata) and their authentication material."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from urllib.parse import urlsplit

import httpx
from authlib.oauth2.rfc6749 import ClientMixin
from joserfc.jwk import KeySet

from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.store import AuthStore, digest, utcnow
from fhir_server.auth.urls import is_loopback_host

log = logging.getLogger(__name__)

AUTH_METHODS = ("none", "client_secret_basic", "private_key_jwt")
ASSERTION_ALGS = ("RS384", "ES384")


class ClientMetadataError(ValueError):
    def __init__(self, message: str, error: str = "invalid_client_metadata"):
        super().__init__(message)
        self.error = error


class Client(ClientMixin):
    def __init__(self, doc: dict):
        self.doc = doc

    # ---- authlib ClientMixin
    @property
    def client_id(self) -> str:
        return self.doc["_id"]

    def get_client_id(self):
        return self.doc["_id"]

    def get_default_redirect_uri(self):
        return None  # SMART: redirect_uri is required and matched exactly

    def get_allowed_scope(self, scope):
        return scope if scope else None

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.doc.get("redirect_uris", [])

    def check_client_secret(self, client_secret):
        stored = self.doc.get("secret_hash")
        return bool(stored) and hmac.compare_digest(stored, digest(client_secret))

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.auth_method

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types

    # ---- ours
    @property
    def auth_method(self) -> str:
        return self.doc.get("token_endpoint_auth_method", "none")

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    @property
    def grant_types(self) -> list[str]:
        return self.doc.get("grant_types", [])

    @property
    def scope(self) -> ScopeSet:
        return ScopeSet.parse(self.doc.get("scope", ""))

    @property
    def name(self) -> str:
        return self.doc.get("client_name") or self.doc["_id"]


class JwksCache:
    """Keys of clients registered with a `jwks_uri`, fetched at most every 5 minutes."""

    TTL = 300

    def __init__(self):
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, uri: str, force: bool = False) -> dict:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(uri)
        if hit and not force and now - hit[0] < self.TTL:
            return hit[1]
        response = httpx.get(uri, timeout=5.0, follow_redirects=False, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
        with self._lock:
            self._cache[uri] = (now, data)
        return data


def client_keys(client: Client, cache: JwksCache, force: bool = False) -> KeySet:
    data = client.doc.get("jwks")
    if not data and client.doc.get("jwks_uri"):
        data = cache.get(client.doc["jwks_uri"], force=force)
    if not data or not isinstance(data, dict) or not data.get("keys"):
        raise ValueError("no keys")
    usable = [
        k for k in data["keys"] if isinstance(k, dict) and k.get("kty") in ("RSA", "EC") and "d" not in k
    ]
    return KeySet.import_key_set({"keys": usable})


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or not parts.scheme or not parts.netloc:
        raise ClientMetadataError(
            f"redirect_uri {uri!r} must be an absolute URL without fragment.", "invalid_redirect_uri"
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ClientMetadataError(
            f"redirect_uri {uri!r}: plain http only on loopback.", "invalid_redirect_uri"
        )
    if parts.scheme not in ("http", "https") and "." not in parts.scheme:
        # native apps use private-use schemes such as fr.example.app:/callback (RFC 8252)
        raise ClientMetadataError(f"redirect_uri {uri!r}: unsupported scheme.", "invalid_redirect_uri")


def validate_metadata(meta: dict) -> dict:
    """RFC 7591 client metadata -> the stored client document (without id and secrets)."""
    if not isinstance(meta, dict):
        raise ClientMetadataError("The registration request must be a JSON object.")
    method = meta.get("token_endpoint_auth_method") or (
        "private_key_jwt" if meta.get("jwks") or meta.get("jwks_uri") else "client_secret_basic"
    )
    if method not in AUTH_METHODS:
        raise ClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}.")
    grant_types = meta.get("grant_types") or (
        ["client_credentials"]
        if method == "private_key_jwt" and not meta.get("redirect_uris")
        else ["authorization_code"]
    )
    if not isinstance(grant_types, list) or not set(grant_types) <= {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }:
        raise ClientMetadataError(
            "grant_types may contain authorization_code, refresh_token, client_credentials."
        )
    if "authorization_code" in grant_types and "refresh_token" not in grant_types:
        grant_types = grant_types + ["refresh_token"]
    if "client_credentials" in grant_types and method != "private_key_jwt":
        raise ClientMetadataError("client_credentials (backend services) requires private_key_jwt.")
    response_types = meta.get("response_types") or (["code"] if "authorization_code" in grant_types else [])
    if set(response_types) - {"code"}:
        raise ClientMetadataError("Only response_type 'code' is supported.")
    redirect_uris = meta.get("redirect_uris") or []
    if not isinstance(redirect_uris, list) or not all(isinstance(u, str) for u in redirect_uris):
        raise ClientMetadataError("redirect_uris must be a list of URLs.", "invalid_redirect_uri")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientMetadataError("redirect_uris is required for authorization_code.", "invalid_redirect_uri")
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    jwks, jwks_uri = meta.get("jwks"), meta.get("jwks_uri")
    if method == "private_key_jwt":
        if not jwks and not jwks_uri:
            raise ClientMetadataError("private_key_jwt needs jwks or jwks_uri.")
        if jwks:
            if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
                raise ClientMetadataError("jwks must be a JWK Set.")
            if any(
                not isinstance(k, dict) or "d" in k or k.get("kty") not in ("RSA", "EC") for k in jwks["keys"]
            ):
                raise ClientMetadataError("jwks must hold public RSA or EC keys only.")
            try:
                KeySet.import_key_set(jwks)
            except Exception as exc:
                raise ClientMetadataError(f"jwks cannot be read: {exc}") from exc
        if jwks_uri:
            parts = urlsplit(jwks_uri)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and is_loopback_host(parts.hostname or "")
            ):
                raise ClientMetadataError("jwks_uri must be https.")
    elif jwks or jwks_uri:
        raise ClientMetadataError("jwks/jwks_uri only with token_endpoint_auth_method=private_key_jwt.")
    scope = ScopeSet.parse(meta.get("scope") or "")
    if scope.unknown:
        raise ClientMetadataError(f"Unknown scope(s): {' '.join(scope.unknown)}")
    if "system" in scope.levels() and "client_credentials" not in grant_types:
        raise ClientMetadataError("system/ scopes are for backend services (client_credentials).")
    if "client_credentials" in grant_types and scope.levels() - {"system"}:
        raise ClientMetadataError("Backend services may only register system/ scopes.")
    name = meta.get("client_name") or "unnamed client"
    if not isinstance(name, str) or len(name) > 200:
        raise ClientMetadataError("client_name must be a short string.")
    doc = {
        "client_name": name,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "response_types": response_types,
        "redirect_uris": redirect_uris,
        "scope": str(scope),
    }
    if jwks:
        doc["jwks"] = jwks
    if jwks_uri:
        doc["jwks_uri"] = jwks_uri
    for extra in ("client_uri", "logo_uri", "contacts", "software_id", "software_version"):
        if extra in meta:
            doc[extra] = meta[extra]
    return doc


def create_client(store: AuthStore, meta: dict, client_id: str | None = None) -> dict:
    """Store a new client; returns the RFC 7591 response (client_secret in clear only here)."""
    doc = validate_metadata(meta)
    client_id = client_id or f"c-{secrets.token_urlsafe(12)}"
    now = utcnow()
    doc.update({"_id": client_id, "created": now})
    secret = None
    if doc["token_endpoint_auth_method"] == "client_secret_basic":
        secret = secrets.token_urlsafe(32)
        doc["secret_hash"] = digest(secret)
    store.clients.insert_one(doc)
    out = {k: v for k, v in doc.items() if k not in ("_id", "created", "secret_hash")}
    out["client_id"] = client_id
    out["client_id_issued_at"] = int(now.timestamp())
    if secret:
        out["client_secret"] = secret
        out["client_secret_expires_at"] = 0
    return json.loads(json.dumps(out))
