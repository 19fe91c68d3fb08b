"""The OAuth 2.0 machinery on authlib: client authentication, grants, PKCE, token responses.

Where authlib's defaults do not fit SMART / this server, and what we do instead:
  * PKCE: authlib's CodeChallenge accepts `plain` and makes it the default method, and only
    requires a verifier from public clients -> `S256` only, a challenge on every authorization
    request, a verifier on every code exchange, for every client.
  * JWT client assertions: authlib decodes with joserfc's "recommended" algorithms (HS256, RS256,
    ES256) and accepts any `exp` -> RS384/ES384 only, `exp` at most 5 minutes ahead, `jti` stored
    until it expires and refused when seen again, `aud` = our token endpoint.
  * Scopes: authlib compares scope strings as sets of words (so `patient/*.rs` does not cover
    `patient/Observation.rs`, and anything goes when scopes_supported is unset) -> the ScopeSet model.
  * Refresh tokens: authlib issues none by default and never rotates -> issued only with
    offline_access/online_access, rotated on each use (see RefreshGrant).
  * Requests: authlib reads `request.values` (query + form) -> form only on POST.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import cached_property

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import request as flask_request
from joserfc import jws, jwt
from joserfc.errors import JoseError
from pymongo.errors import DuplicateKeyError

from fhir_server.auth import urls
from fhir_server.auth.clients import ASSERTION_ALGS, client_keys
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.store import aware, digest, utcnow

log = logging.getLogger(__name__)

USER_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]


# ---------------------------------------------------------------------------- requests
class _Payload(OAuth2Payload):
    def __init__(self, request):
        self._request = request

    @property
    def data(self):
        return self._request.form if self._request.method == "POST" else self._request.args

    @cached_property
    def datalist(self):
        values = defaultdict(list)
        for k in self.data:
            values[k].extend(self.data.getlist(k))
        return values


class _Request(FlaskOAuth2Request):
    def __init__(self, request):
        super().__init__(request)
        self.payload = _Payload(request)


class SmartAuthorizationServer(AuthorizationServer):
    def __init__(self, service):
        super().__init__()
        self.service = service
        self._query_client = service.query_client
        self._save_token = lambda token, request: None
        self.register_token_generator("default", self._unused_generator)

    @staticmethod
    def _unused_generator(**kwargs):  # every grant below builds its own response
        raise RuntimeError("token generation goes through AuthService.token_response")

    def create_oauth2_request(self, request):
        return _Request(flask_request)

    def validate_requested_scope(self, scope):
        parsed = ScopeSet.parse(scope or "")
        if parsed.unknown:
            raise InvalidScopeError(f"Unknown or malformed scope: {' '.join(parsed.unknown)}")


# ---------------------------------------------------------------------------- PKCE
class S256Required(CodeChallenge):
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError(
                "PKCE is required: send code_challenge with code_challenge_method=S256."
            )
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 (plain is refused).")
        return super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier' (PKCE is required for every client).")
        return super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code["code_challenge"]

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code["code_challenge_method"]


# ---------------------------------------------------------------------------- private_key_jwt
class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, service):
        super().__init__(validate_jti=True, leeway=30)
        self.service = service

    def get_audiences(self):
        return [urls.endpoint("token"), urls.endpoint("token") + "/"]

    def resolve_client_public_key(self, client):
        return client  # resolved per kid in process_assertion_claims

    def __call__(self, query_client, req):
        data = req.form
        if data.get("client_assertion_type") == self.CLIENT_ASSERTION_TYPE and data.get("client_assertion"):
            headers, claims = self.extract_assertion(data["client_assertion"])
            client_id = claims.get("sub")
            if not isinstance(client_id, str):
                raise InvalidClientError(description="The assertion has no 'sub'.")
            client = query_client(client_id)
            if not client:
                raise InvalidClientError(description="The client does not exist on this server.")
            if data.get("client_id") and data.get("client_id") != client_id:
                raise InvalidClientError(description="client_id differs from the assertion's sub.")
            req.client = client
            self.process_assertion_claims(data["client_assertion"], client)
            return self.authenticate_client(client)
        return None

    def process_assertion_claims(self, assertion, client):
        try:
            header = jws.extract_compact(assertion.encode("ascii")).headers()
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description="Invalid JWT assertion.") from exc
        if header.get("alg") not in ASSERTION_ALGS:
            raise InvalidClientError(
                description=f"Assertion algorithm must be one of {', '.join(ASSERTION_ALGS)}."
            )
        token = None
        for force in (False, True):  # a jwks_uri client may have rotated its keys: refetch once
            try:
                keys = client_keys(client, self.service.jwks_cache, force=force)
                token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGS))
                break
            except (JoseError, ValueError) as exc:
                if force or not client.doc.get("jwks_uri"):
                    raise InvalidClientError(description="The assertion signature does not verify.") from exc
            except Exception as exc:
                raise InvalidClientError(description=f"The client's keys cannot be read: {exc}") from exc
        claims = token.claims
        exp = claims.get("exp")
        if (
            isinstance(exp, (int, float))
            and exp > time.time() + self.service.config.client_assertion_max_lifetime + 5
        ):
            raise InvalidClientError(description="The assertion 'exp' is more than 5 minutes ahead.")
        self.verify_claims(claims)
        return claims

    def validate_jti(self, claims, jti):
        if not isinstance(jti, str) or not jti:
            return False
        exp = datetime.fromtimestamp(float(claims["exp"]) + 60, UTC)
        try:
            self.service.store.jti.insert_one({"_id": f"{claims['iss']}|{jti}", "expires_at": exp})
        except DuplicateKeyError:
            return False
        return True


# ---------------------------------------------------------------------------- grants
class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS

    def query_authorization_code(self, code, client):
        service = self.server.service
        key = digest(code)
        doc = service.store.codes.find_one_and_update({"_id": key, "used": False}, {"$set": {"used": True}})
        if doc is None:
            previous = service.store.codes.find_one({"_id": key})
            if previous is not None and previous.get("used"):
                # RFC 6749 4.1.2: a code used twice revokes what it produced
                service.tokens.revoke_grant(previous["grant_id"])
                log.warning("authorization code replay for client %s; grant revoked", previous["client_id"])
            return None
        if doc["client_id"] != client.client_id or aware(doc["expires_at"]) <= utcnow():
            return None
        return _Code(doc)

    def delete_authorization_code(self, authorization_code):
        pass  # already marked used atomically; kept (until its TTL) to detect replays

    def authenticate_user(self, authorization_code):
        return authorization_code["grant_id"]

    def create_token_response(self):
        service = self.server.service
        code = self.request.authorization_code
        grant = service.store.grants.find_one({"_id": code["grant_id"]})
        if grant is None or grant.get("revoked"):
            raise InvalidGrantError("The authorization was withdrawn.")
        body = service.token_response(
            self.request.client, grant, ScopeSet.parse(grant["scope"]), new_refresh=True
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _Code(dict):
    def get_redirect_uri(self):
        return self["redirect_uri"]

    def get_scope(self):
        return self.get("scope", "")


class RefreshGrant(grants.RefreshTokenGrant):
    """Rotation: each use returns a new refresh token. The presented one keeps working until its
    successor has been used once (a client that lost a response can retry); presenting it after
    that is a replay: the whole grant (refresh and access tokens) is revoked."""

    TOKEN_ENDPOINT_AUTH_METHODS = USER_AUTH_METHODS

    def _client_from_public_refresh_token(self):
        """SMART: a public client need not send client_id when refreshing (fhirclient does not): the refresh
        token names its client, accepted only when that client is public (auth method "none")."""
        form = self.request.form
        if form.get("client_id") or form.get("client_assertion") or self.request.headers.get("Authorization"):
            return None
        doc = self.server.service.store.refresh.find_one({"_id": digest(form.get("refresh_token") or "")})
        client = self.server.query_client(doc["client_id"]) if doc else None
        if client is None or not client.public or not client.check_grant_type(self.GRANT_TYPE):
            return None
        self.request.auth_method = "none"
        return client

    def validate_token_request(self):
        client = self._client_from_public_refresh_token() or self._validate_request_client()
        self.request.client = client
        service = self.server.service
        presented = self.request.form.get("refresh_token")
        if not presented:
            raise InvalidRequestError("Missing 'refresh_token'.")
        doc = service.store.refresh.find_one({"_id": digest(presented)})
        if doc is None or doc.get("revoked") or aware(doc["expires_at"]) <= utcnow():
            raise InvalidGrantError("The refresh token is invalid, expired or revoked.")
        if doc["client_id"] != client.client_id:
            raise InvalidGrantError("The refresh token was issued to another client.")
        grant = service.store.grants.find_one({"_id": doc["grant_id"]})
        if grant is None or grant.get("revoked") or aware(grant["expires_at"]) <= utcnow():
            raise InvalidGrantError("The authorization was withdrawn or has expired.")
        if doc.get("superseded"):
            service.tokens.revoke_grant(doc["grant_id"])
            log.warning(
                "refresh token replay for client %s; grant %s revoked", client.client_id, doc["grant_id"]
            )
            raise InvalidGrantError("The refresh token was already rotated; the authorization is revoked.")
        granted = ScopeSet.parse(grant["scope"])
        requested = self.request.form.get("scope")
        scope = granted
        if requested:
            wanted = ScopeSet.parse(requested)
            if wanted.unknown or not granted.covers(wanted):
                raise InvalidScopeError("A refresh may only narrow the granted scope.")
            scope = wanted
        self.request.refresh_doc = doc
        self.request.grant_doc = grant
        self.request.narrowed_scope = scope

    def create_token_response(self):
        service = self.server.service
        doc = self.request.refresh_doc
        if doc.get("parent"):
            service.store.refresh.update_one({"_id": doc["parent"]}, {"$set": {"superseded": True}})
        if doc.get("child"):
            service.store.refresh.delete_one({"_id": doc["child"]})  # an earlier, never used successor
        body = service.token_response(
            self.request.client,
            self.request.grant_doc,
            self.request.narrowed_scope,
            new_refresh=True,
            parent=doc["_id"],
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_token_request(self):
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError("The client is not registered for client_credentials.")
        self.request.client = client
        requested = ScopeSet.parse(self.request.form.get("scope") or "")
        if requested.unknown:
            raise InvalidScopeError(f"Unknown or malformed scope: {' '.join(requested.unknown)}")
        if not requested:
            requested = client.scope
        if requested.levels() - {"system"} or requested.simple:
            raise InvalidScopeError("Backend services may only ask for system/ scopes.")
        if not client.scope.covers(requested):
            raise InvalidScopeError(
                "The scope exceeds what the client registered: " + " ".join(client.scope.uncovered(requested))
            )
        if not requested:
            raise InvalidScopeError("No scope.")
        self.request.granted_scope = requested

    def create_token_response(self):
        service = self.server.service
        body = service.system_token_response(self.request.client, self.request.granted_scope)
        return 200, body, self.TOKEN_RESPONSE_HEADER


def build_server(service) -> SmartAuthorizationServer:
    server = SmartAuthorizationServer(service)
    server.register_client_auth_method("private_key_jwt", PrivateKeyJWT(service))
    server.register_grant(AuthorizationCodeGrant, [S256Required(required=True)])
    server.register_grant(RefreshGrant)
    server.register_grant(ClientCredentialsGrant)
    return server


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def in_seconds(seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
