"""SMART on FHIR authorization server (SMART App Launch 2.x, Backend Services, OpenID Connect).

Public API used by the rest of the server:
    init_auth(app, settings)    register every endpoint; app.extensions['dmp_auth'] = AuthService
    current_principal()         the verified caller of the current request (FhirError 401 otherwise)
    smart_urls(base_url)        oauth-uris for the CapabilityStatement
    register_client(app, ...)   CLI helper (`dmp-fhir clients register`)
    ensure_demo_accounts(app)   demo people + demo public client (`dmp-fhir serve --demo`)
"""

from __future__ import annotations

import flask
from flask import current_app, g, request

from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import ScopeSet
from fhir_server.auth.urls import smart_urls
from fhir_server.config import Settings
from fhir_server.fhir.errors import FhirError

__all__ = [
    "Principal",
    "ScopeSet",
    "current_principal",
    "ensure_demo_accounts",
    "init_auth",
    "register_client",
    "smart_urls",
]

REALM = "dmp-fhir"


def init_auth(app: flask.Flask, settings: Settings) -> None:
    """Register discovery, JWKS, OAuth endpoints, login/consent pages and the EHR launch endpoint."""
    from fhir_server.auth.config import AuthConfig
    from fhir_server.auth.proxy import install_proxy_fix
    from fhir_server.auth.service import AuthService
    from fhir_server.auth.views import register_views

    if "dmp_auth" in app.extensions:
        return
    config = AuthConfig.from_settings(settings)
    if settings.public_base_url:
        from fhir_server.auth.urls import is_loopback_url

        if settings.public_base_url.startswith("http://") and not is_loopback_url(settings.public_base_url):
            raise ValueError("DMP_PUBLIC_BASE_URL: plain http is only accepted on loopback (development).")
    service = AuthService(app.extensions["dmp"].repository.db, config)
    app.extensions["dmp_auth"] = service
    install_proxy_fix(app, config.trusted_proxies)
    register_views(app, service)


def _unauthorized(description: str, error: str | None = "invalid_token", code: str = "login") -> FhirError:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        safe = description.replace('"', "'")
        challenge += f', error="{error}", error_description="{safe}"'
    return FhirError(401, description, code, headers={"WWW-Authenticate": challenge})


def current_principal() -> Principal:
    """The Principal of the current request, from its Bearer access token.

    Checks signature (our JWKS), `typ` at+jwt, `exp`, `iss`, `aud` (this server's FHIR base URL,
    trailing slash tolerant) and revocation (one `_id` lookup, "not revoked" cached a couple of seconds).
    Raises FhirError(401) with a `WWW-Authenticate: Bearer ...` header otherwise.
    """
    cached = g.get("_dmp_principal")
    if cached is not None:
        return cached
    from fhir_server.auth import urls
    from fhir_server.auth.tokens import InvalidToken, principal_from_claims

    service = current_app.extensions.get("dmp_auth")
    if service is None:
        raise RuntimeError("init_auth(app, settings) was not called")
    header = request.headers.get("Authorization", "")
    if not header:
        raise _unauthorized("This server needs an access token: Authorization: Bearer <token>.", error=None)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("The Authorization header must be 'Bearer <access token>'.", "invalid_request")
    try:
        claims = service.tokens.decode(token, issuer=urls.issuer(), audience=urls.fhir_base_url())
    except InvalidToken as exc:
        code = "expired" if "expired" in str(exc) else "login"
        raise _unauthorized(str(exc), "invalid_token", code) from exc
    principal = principal_from_claims(claims)
    g._dmp_principal = principal
    return principal


def register_client(
    app: flask.Flask,
    name: str,
    scope: str,
    jwks=None,
    public: bool = False,
    secret: bool = False,
    redirect_uris=(),
    jwks_uri: str | None = None,
    client_id: str | None = None,
) -> dict:
    """Register an OAuth client and return it as printable JSON (the secret is shown only here).

    - jwks (dict or path to a JWKS file) -> private_key_jwt; backend services when no redirect URI
    - public=True -> token_endpoint_auth_method none (PKCE)
    - secret=True -> client_secret_basic
    """
    import json
    from pathlib import Path

    from fhir_server.auth.clients import create_client

    if sum(bool(x) for x in (jwks or jwks_uri, public, secret)) != 1:
        raise ValueError("choose exactly one of jwks/jwks_uri, public, secret")
    if isinstance(jwks, (str, Path)):
        jwks = json.loads(Path(jwks).read_text(encoding="utf-8"))
    redirect_uris = list(redirect_uris or ())
    meta: dict = {"client_name": name, "scope": scope, "redirect_uris": redirect_uris}
    if public:
        meta["token_endpoint_auth_method"] = "none"
    elif secret:
        meta["token_endpoint_auth_method"] = "client_secret_basic"
    else:
        meta["token_endpoint_auth_method"] = "private_key_jwt"
        if jwks:
            meta["jwks"] = jwks
        if jwks_uri:
            meta["jwks_uri"] = jwks_uri
    if redirect_uris:
        meta["grant_types"] = ["authorization_code", "refresh_token"]
    else:
        meta["grant_types"] = ["client_credentials"]
    return create_client(app.extensions["dmp_auth"].store, meta, client_id=client_id)


def ensure_demo_accounts(app: flask.Flask) -> list[dict]:
    from fhir_server.auth.accounts import ensure_demo_accounts as _ensure

    return _ensure(app)
