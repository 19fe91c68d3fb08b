"""AuthService: what `init_auth` stores in app.extensions['dmp_auth']."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from fhir_server.auth import urls
from fhir_server.auth.clients import Client, JwksCache
from fhir_server.auth.config import AuthConfig
from fhir_server.auth.keys import KeyStore
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.store import AuthStore, aware, digest, utcnow
from fhir_server.auth.tokens import TokenService, context_claims

log = logging.getLogger(__name__)


class AuthService:
    def __init__(self, db, config: AuthConfig):
        self.config = config
        self.store = AuthStore(db)
        max_ttl = max(config.access_token_ttl, config.id_token_ttl)
        self.keys = KeyStore(db, config.keys_dir, max_token_ttl=max_ttl)
        self.tokens = TokenService(
            self.keys,
            self.store,
            config.access_token_ttl,
            config.id_token_ttl,
            config.revocation_cache_seconds,
        )
        self.jwks_cache = JwksCache()
        from fhir_server.auth.server import build_server

        self.server = build_server(self)

    # ------------------------------------------------------------------ clients
    def query_client(self, client_id) -> Client | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        doc = self.store.clients.find_one({"_id": client_id})
        return Client(doc) if doc else None

    # ------------------------------------------------------------------ grants (user authorizations)
    def create_grant(
        self,
        client: Client,
        account: dict | None,
        scope: ScopeSet,
        ctx: dict,
        nonce: str | None,
        auth_time: int | None,
    ) -> dict:
        offline = scope.has("offline_access")
        online = scope.has("online_access") and not offline
        ttl = (
            self.config.refresh_offline_ttl
            if offline
            else self.config.refresh_online_ttl
            if online
            else self.config.access_token_ttl
        )
        grant = {
            "_id": uuid.uuid4().hex,
            "client_id": client.client_id,
            "account_id": account["_id"] if account else None,
            "scope": str(scope),
            "ctx": ctx,
            "nonce": nonce,
            "auth_time": auth_time,
            "refreshable": offline or online,
            "created": utcnow(),
            "expires_at": utcnow() + timedelta(seconds=ttl + 60),
            "revoked": False,
        }
        self.store.grants.insert_one(grant)
        return grant

    def token_response(
        self, client: Client, grant: dict, scope: ScopeSet, new_refresh: bool, parent: str | None = None
    ) -> dict:
        ctx = dict(grant.get("ctx") or {})
        if grant.get("auth_time"):
            ctx["auth_time"] = grant["auth_time"]  # refreshed tokens keep the login time
        issuer = urls.issuer()
        subject = grant.get("account_id") or client.client_id
        access, claims = self.tokens.access_token(
            issuer=issuer,
            audience=urls.fhir_base_url(),
            client_id=client.client_id,
            scope=scope,
            subject=subject,
            grant_id=grant["_id"],
            ctx=ctx,
        )
        body: dict = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.config.access_token_ttl),
            "scope": str(scope),
            "need_patient_banner": bool(ctx.get("need_patient_banner", True)),
            "smart_style_url": urls.endpoint("smart-style.json"),
        }
        if ctx.get("patient"):
            body["patient"] = ctx["patient"]
        if ctx.get("encounter"):
            body["encounter"] = ctx["encounter"]
        if ctx.get("fhir_user") and scope.has("fhirUser"):
            body["fhirUser"] = ctx["fhir_user"]
        if scope.has("openid"):
            body["id_token"] = self.tokens.id_token(
                issuer=issuer,
                client_id=client.client_id,
                subject=subject,
                fhir_user=ctx.get("fhir_user") if scope.has("fhirUser") else None,
                nonce=grant.get("nonce"),
                auth_time=grant.get("auth_time"),
                access_token=access,
                name=ctx.get("subject_name") if scope.has("profile") else None,
            )
        if new_refresh and grant.get("refreshable") and client.check_grant_type("refresh_token"):
            body["refresh_token"] = self.new_refresh_token(client, grant, parent)
        return body

    def system_token_response(self, client: Client, scope: ScopeSet) -> dict:
        access, _ = self.tokens.access_token(
            issuer=urls.issuer(),
            audience=urls.fhir_base_url(),
            client_id=client.client_id,
            scope=scope,
            subject=client.client_id,
            grant_id=None,
            ctx={"kind": "system", "subject_name": client.name},
        )
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(self.config.access_token_ttl),
            "scope": str(scope),
        }

    def new_refresh_token(self, client: Client, grant: dict, parent: str | None) -> str:
        from fhir_server.auth.server import new_secret

        token = new_secret(32)
        key = digest(token)
        self.store.refresh.insert_one(
            {
                "_id": key,
                "grant_id": grant["_id"],
                "client_id": client.client_id,
                "parent": parent,
                "child": None,
                "superseded": False,
                "revoked": False,
                "created": utcnow(),
                "expires_at": aware(grant["expires_at"]),
            }
        )
        if parent:
            self.store.refresh.update_one({"_id": parent}, {"$set": {"child": key}})
        return token

    # ------------------------------------------------------------------ introspection helpers
    def introspect(self, token: str) -> dict:
        """RFC 7662 view of an access or refresh token ({"active": false} for anything not valid)."""
        from fhir_server.auth.tokens import InvalidToken

        if token and token.count(".") == 2:
            try:
                claims = self.tokens.decode(token, issuer=None, audience=None)
            except InvalidToken:
                return {"active": False}
            out = {"active": True, "token_type": "Bearer"}
            for k in (
                "scope",
                "client_id",
                "sub",
                "aud",
                "iss",
                "exp",
                "iat",
                "nbf",
                "jti",
                "fhirUser",
                "patient",
                "encounter",
                "extensions",
                "sid",
            ):
                if k in claims:
                    out[k] = claims[k]
            out["username"] = claims.get("sub")
            return out
        doc = self.store.refresh.find_one({"_id": digest(token or "")})
        if doc is None or doc.get("revoked") or doc.get("superseded") or aware(doc["expires_at"]) <= utcnow():
            return {"active": False}
        grant = self.store.grants.find_one({"_id": doc["grant_id"]})
        if grant is None or grant.get("revoked"):
            return {"active": False}
        out = {
            "active": True,
            "token_type": "refresh_token",
            "scope": grant["scope"],
            "client_id": doc["client_id"],
            "sub": grant.get("account_id") or doc["client_id"],
            "exp": int(aware(doc["expires_at"]).timestamp()),
            "iss": urls.issuer(),
        }
        out.update(context_claims(grant.get("ctx") or {}))
        return out

    def token_client_id(self, token: str) -> tuple[str | None, str | None, dict | None]:
        """(client_id, kind, data) of a token we issued, without requiring it to be valid now."""
        from fhir_server.auth.tokens import InvalidToken

        if token and token.count(".") == 2:
            try:
                claims = self.tokens.decode(token, issuer=None, audience=None, check_revoked=False)
            except InvalidToken:
                return None, None, None
            return claims.get("client_id"), "access_token", claims
        doc = self.store.refresh.find_one({"_id": digest(token or "")})
        if doc is None:
            return None, None, None
        return doc["client_id"], "refresh_token", doc
