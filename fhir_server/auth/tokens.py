"""Access tokens (signed JWT, RFC 9068 `at+jwt`), id_tokens, and their verification.

Access token claims:
  iss, sub, aud (the FHIR base URL), exp, iat, nbf, jti, client_id, scope, sid (grant id),
  fhirUser, patient (when in context), and IUA-style claims under
  ``extensions.ihe_iua`` (subject_role, purpose_of_use, national_provider_identifier, person_id,
  subject_name) plus ``extensions.dmp`` (kind, break_the_glass_reason, network_address).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC

from joserfc import jws, jwt
from joserfc.errors import JoseError

from fhir_server.auth.keys import SIGNING_ALG, KeyStore
from fhir_server.auth.principal import PURPOSE_OF_USE_SYSTEM, Principal
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.store import AuthStore, utcnow
from fhir_server.auth.urls import same_url

ACCESS_TOKEN_TYP = "at+jwt"
CLOCK_LEEWAY = 30


class InvalidToken(Exception):
    """A bearer token that must be refused (missing, malformed, bad signature, expired, revoked...)."""


def context_claims(ctx: dict) -> dict:
    """Launch-context and identity claims shared by the access token, introspection and the token response."""
    claims: dict = {}
    if ctx.get("fhir_user"):
        claims["fhirUser"] = ctx["fhir_user"]
    if ctx.get("patient"):
        claims["patient"] = ctx["patient"]
    if ctx.get("encounter"):
        claims["encounter"] = ctx["encounter"]
    if ctx.get("auth_time"):
        claims["auth_time"] = int(ctx["auth_time"])  # when the user logged in: emergency access is time-limited
    iua: dict = {}
    roles = [{"system": p["system"], "code": p["code"]} for p in ctx.get("professions") or ()]
    if roles:
        iua["subject_role"] = roles
    purposes = ctx.get("purpose_of_use") or ()
    if purposes:
        iua["purpose_of_use"] = [{"system": PURPOSE_OF_USE_SYSTEM, "code": p} for p in purposes]
    if ctx.get("npi"):
        iua["national_provider_identifier"] = ctx["npi"]
    if ctx.get("person_id"):
        iua["person_id"] = ctx["person_id"]
    if ctx.get("subject_name"):
        iua["subject_name"] = ctx["subject_name"]
    dmp = {"kind": ctx.get("kind") or "system"}
    if ctx.get("btg_reason"):
        dmp["break_the_glass_reason"] = ctx["btg_reason"]
    if ctx.get("network_address"):
        dmp["network_address"] = ctx["network_address"]
    claims["extensions"] = {"ihe_iua": iua, "dmp": dmp} if iua else {"dmp": dmp}
    return claims


class TokenService:
    def __init__(
        self, keys: KeyStore, store: AuthStore, access_ttl: int, id_ttl: int, revocation_cache: float
    ):
        self.keys = keys
        self.store = store
        self.access_ttl = access_ttl
        self.id_ttl = id_ttl
        self.revocation_cache = revocation_cache
        self._not_revoked: dict[str, float] = {}
        self._cache_lock = threading.Lock()

    # ------------------------------------------------------------------ issuing
    def access_token(
        self,
        *,
        issuer: str,
        audience: str,
        client_id: str,
        scope: ScopeSet,
        subject: str,
        grant_id: str | None,
        ctx: dict,
        ttl: int | None = None,
    ) -> tuple[str, dict]:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + (ttl or self.access_ttl),
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": str(scope),
        }
        if grant_id:
            claims["sid"] = grant_id
        claims.update(context_claims(ctx))
        kid, key = self.keys.signing_key
        token = jwt.encode(
            {"alg": SIGNING_ALG, "kid": kid, "typ": ACCESS_TOKEN_TYP}, claims, key, algorithms=[SIGNING_ALG]
        )
        return token, claims

    def id_token(
        self,
        *,
        issuer: str,
        client_id: str,
        subject: str,
        fhir_user: str | None,
        nonce: str | None,
        auth_time: int | None,
        access_token: str | None = None,
        name: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": str(subject),
            "aud": client_id,
            "iat": now,
            "exp": now + self.id_ttl,
        }
        if auth_time:
            claims["auth_time"] = int(auth_time)
        if nonce:
            claims["nonce"] = nonce
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if name:
            claims["name"] = name
        if access_token:
            import base64
            import hashlib

            half = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
            claims["at_hash"] = base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")
        kid, key = self.keys.signing_key
        return jwt.encode(
            {"alg": SIGNING_ALG, "kid": kid, "typ": "JWT"}, claims, key, algorithms=[SIGNING_ALG]
        )

    # ------------------------------------------------------------------ verification
    def decode(
        self, token: str, *, issuer: str | None, audience: str | None, check_revoked: bool = True
    ) -> dict:
        """Claims of a valid access token, else InvalidToken. One indexed lookup at most (revocation)."""
        if not token or token.count(".") != 2 or len(token) > 16384:
            raise InvalidToken("The access token is malformed.")
        try:
            header = jws.extract_compact(token.encode("ascii")).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise InvalidToken("The access token is malformed.") from exc
        if header.get("alg") != SIGNING_ALG or header.get("typ") != ACCESS_TOKEN_TYP:
            raise InvalidToken("The token is not an access token of this server.")
        key = self.keys.verification_key(header.get("kid"))
        if key is None:
            raise InvalidToken("The access token was not signed by a current key of this server.")
        try:
            claims = jwt.decode(token, key, algorithms=[SIGNING_ALG]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidToken("The access token signature is invalid.") from exc
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now - CLOCK_LEEWAY:
            raise InvalidToken("The access token has expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf > now + CLOCK_LEEWAY:
            raise InvalidToken("The access token is not valid yet.")
        if issuer is not None and not same_url(claims.get("iss"), issuer):
            raise InvalidToken("The access token was issued by another server.")
        if audience is not None:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if not any(same_url(a, audience) for a in auds if isinstance(a, str)):
                raise InvalidToken("The access token is meant for another server (aud).")
        if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
            raise InvalidToken("The access token is malformed.")
        if check_revoked and self.is_revoked(claims["jti"], claims.get("sid")):
            raise InvalidToken("The access token was revoked.")
        return claims

    def is_revoked(self, jti: str, grant_id: str | None) -> bool:
        now = time.monotonic()
        if self.revocation_cache > 0:
            until = self._not_revoked.get(jti)
            if until is not None and until > now:
                return False
        ids = [jti] + ([f"grant:{grant_id}"] if grant_id else [])
        found = self.store.revoked.find_one({"_id": {"$in": ids}}, {"_id": 1}) is not None
        if not found and self.revocation_cache > 0:
            with self._cache_lock:
                if len(self._not_revoked) > 50_000:
                    self._not_revoked = {k: v for k, v in self._not_revoked.items() if v > now}
                    if len(self._not_revoked) > 50_000:
                        self._not_revoked.clear()
                self._not_revoked[jti] = now + self.revocation_cache
        return found

    def revoke_jti(self, jti: str, exp: float | None) -> None:
        from datetime import datetime

        expires = datetime.fromtimestamp(exp, UTC) if exp else utcnow()
        self.store.revoked.update_one({"_id": jti}, {"$set": {"expires_at": expires}}, upsert=True)
        self.forget_cache()

    def revoke_grant(self, grant_id: str) -> None:
        from datetime import timedelta

        expires = utcnow() + timedelta(seconds=self.access_ttl + 2 * CLOCK_LEEWAY)
        self.store.revoked.update_one(
            {"_id": f"grant:{grant_id}"}, {"$set": {"expires_at": expires}}, upsert=True
        )
        self.store.grants.update_one({"_id": grant_id}, {"$set": {"revoked": True}})
        self.store.refresh.update_many({"grant_id": grant_id}, {"$set": {"revoked": True}})
        self.forget_cache()

    def forget_cache(self) -> None:
        with self._cache_lock:
            self._not_revoked.clear()


def principal_from_claims(claims: dict) -> Principal:
    ext = claims.get("extensions") or {}
    iua = ext.get("ihe_iua") or {}
    dmp = ext.get("dmp") or {}
    kind = dmp.get("kind") or ("system" if not claims.get("fhirUser") else "practitioner")
    return Principal(
        kind=kind,
        fhir_user=claims.get("fhirUser"),
        patient=claims.get("patient"),
        scopes=ScopeSet.parse(claims.get("scope", "")),
        client_id=claims["client_id"],
        token_id=claims.get("jti"),
        purpose_of_use=tuple(p.get("code") for p in iua.get("purpose_of_use") or () if isinstance(p, dict)),
        professions=tuple(
            (r.get("system"), r.get("code")) for r in iua.get("subject_role") or () if isinstance(r, dict)
        ),
        break_the_glass_reason=dmp.get("break_the_glass_reason"),
        granted_at=claims.get("auth_time") or claims.get("iat"),
        network_address=dmp.get("network_address"),
    )
