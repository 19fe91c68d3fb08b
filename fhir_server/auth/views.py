"""HTTP endpoints of the authorization server (JSON side): discovery, JWKS, token, introspection,
revocation, registration, EHR launch contexts, the SMART style document."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from datetime import timedelta

from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Flask, Response, current_app, request

from fhir_server.auth import urls
from fhir_server.auth.clients import ASSERTION_ALGS, ClientMetadataError, create_client
from fhir_server.auth.store import utcnow

log = logging.getLogger(__name__)

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-passthrough-banner",
    "context-passthrough-style",
    "context-ehr-patient",
    "context-standalone-patient",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "authorize-post",
]
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "user/*.read",
    "user/*.write",
    "system/*.read",
    "system/*.write",
]
AUTH_METHODS_SUPPORTED = ["private_key_jwt", "client_secret_basic", "none"]
GRANT_TYPES = ["authorization_code", "client_credentials", "refresh_token"]

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(body, status: int = 200, headers: dict | None = None, cors: bool = False) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        response.headers[k] = v
    if cors:
        add_cors(response)
    return response


def add_cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def oauth_error(
    error: str, description: str, status: int = 400, headers: dict | None = None, cors=False
) -> Response:
    return json_response(
        {"error": error, "error_description": description}, status, {**NO_STORE, **(headers or {})}, cors
    )


def _service():
    return current_app.extensions["dmp_auth"]


def smart_configuration() -> dict:
    e = urls.endpoint
    return {
        "issuer": urls.issuer(),
        "jwks_uri": e("jwks"),
        "authorization_endpoint": e("authorize"),
        "token_endpoint": e("token"),
        "token_endpoint_auth_methods_supported": AUTH_METHODS_SUPPORTED,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "grant_types_supported": GRANT_TYPES,
        "registration_endpoint": e("register"),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "management_endpoint": e("manage"),
        "introspection_endpoint": e("introspect"),
        "revocation_endpoint": e("revoke"),
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
    }


def openid_configuration() -> dict:
    e = urls.endpoint
    return {
        "issuer": urls.issuer(),
        "authorization_endpoint": e("authorize"),
        "token_endpoint": e("token"),
        "jwks_uri": e("jwks"),
        "registration_endpoint": e("register"),
        "introspection_endpoint": e("introspect"),
        "revocation_endpoint": e("revoke"),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS_SUPPORTED,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "at_hash",
            "fhirUser",
            "name",
        ],
        "ui_locales_supported": ["fr", "en"],
    }


def register_views(app: Flask, service) -> None:
    settings = app.config["DMP_SETTINGS"]
    base_path = settings.base_path.rstrip("/")
    bp = Blueprint(
        "dmp_auth",
        __name__,
        url_prefix=urls.PREFIX,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    @bp.before_request
    def _transport():
        if request.method == "OPTIONS":
            return None
        if not urls.transport_ok():
            return oauth_error("invalid_request", "This authorization server only answers over HTTPS.", 400)
        return None

    # ---------------------------------------------------------------- discovery (CORS)
    @app.route(f"{base_path}/.well-known/smart-configuration", methods=["GET", "OPTIONS"])
    def smart_config():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        return json_response(
            smart_configuration(), cors=True, headers={"Cache-Control": "public, max-age=300"}
        )

    @app.route("/.well-known/openid-configuration", methods=["GET", "OPTIONS"])
    def openid_config():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        return json_response(
            openid_configuration(), cors=True, headers={"Cache-Control": "public, max-age=300"}
        )

    @bp.route("/jwks", methods=["GET", "OPTIONS"])
    def jwks():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        return json_response(service.keys.jwks(), cors=True, headers={"Cache-Control": "public, max-age=300"})

    @bp.route("/smart-style.json", methods=["GET", "OPTIONS"])
    def smart_style():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        return json_response(
            {
                "color_background": "#f5f7fa",
                "color_error": "#c0392b",
                "color_highlight": "#00a3a6",
                "color_modal_backdrop": "",
                "color_success": "#27ae60",
                "color_text": "#1a1a2e",
                "dim_border_radius": "6px",
                "dim_font_size": "15px",
                "dim_spacing_size": "16px",
                "font_family_body": "Marianne, Arial, sans-serif",
                "font_family_heading": "Marianne, Arial, sans-serif",
            },
            cors=True,
        )

    # ---------------------------------------------------------------- token (CORS)
    @bp.route("/token", methods=["POST", "OPTIONS"])
    def token():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        if request.mimetype != "application/x-www-form-urlencoded":
            return oauth_error(
                "invalid_request", "The token request must be application/x-www-form-urlencoded.", cors=True
            )
        response = service.server.create_token_response()
        for k, v in NO_STORE.items():
            response.headers[k] = v
        return add_cors(response)

    # ---------------------------------------------------------------- introspection (RFC 7662)
    @bp.route("/introspect", methods=["POST", "OPTIONS"])
    def introspect():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        client = _authenticate_client("introspection")
        if isinstance(client, Response):
            return client
        token = request.form.get("token")
        if not token:
            return oauth_error("invalid_request", "Missing 'token'.", cors=True)
        result = service.introspect(token)
        # public clients only learn about their own tokens; confidential clients (resource servers) any
        if result.get("active") and client.public and result.get("client_id") != client.client_id:
            result = {"active": False}
        return json_response(result, headers=NO_STORE, cors=True)

    # ---------------------------------------------------------------- revocation (RFC 7009)
    @bp.route("/revoke", methods=["POST", "OPTIONS"])
    def revoke():
        if request.method == "OPTIONS":
            return add_cors(Response(status=204))
        client = _authenticate_client("revocation")
        if isinstance(client, Response):
            return client
        token = request.form.get("token")
        if not token:
            return oauth_error("invalid_request", "Missing 'token'.", cors=True)
        hint = request.form.get("token_type_hint")
        if hint and hint not in ("access_token", "refresh_token"):
            return oauth_error(
                "unsupported_token_type", f"token_type_hint '{hint}' is not supported.", cors=True
            )
        owner, kind, data = service.token_client_id(token)
        if owner is not None and owner == client.client_id:
            if kind == "access_token":
                service.tokens.revoke_jti(data["jti"], data.get("exp"))
            else:
                service.tokens.revoke_grant(data["grant_id"])
        return add_cors(Response(status=200, headers=NO_STORE))

    def _authenticate_client(endpoint: str):
        try:
            return service.server.authenticate_client(
                service.server.create_oauth2_request(None),
                ["client_secret_basic", "private_key_jwt", "none"],
                endpoint,
            )
        except OAuth2Error as err:
            status, body, headers = err()
            return json_response(body, status, {**dict(headers), **NO_STORE}, cors=True)

    # ---------------------------------------------------------------- dynamic registration (RFC 7591)
    @bp.route("/register", methods=["POST"])
    def register():
        expected = service.config.registration_token
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if not expected:
            return oauth_error(
                "access_denied",
                "Dynamic registration is disabled on this server (no DMP_REGISTRATION_TOKEN).",
                403,
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected.encode()
        ):
            return oauth_error(
                "invalid_token",
                "An initial access token is required (Authorization: Bearer ...).",
                401,
                {"WWW-Authenticate": 'Bearer realm="dmp-fhir-registration", error="invalid_token"'},
            )
        meta = request.get_json(silent=True)
        try:
            body = create_client(service.store, meta)
        except ClientMetadataError as exc:
            return oauth_error(exc.error, str(exc), 400)
        return json_response(body, 201, NO_STORE)

    # ---------------------------------------------------------------- EHR launch contexts
    @bp.route("/launch", methods=["POST"])
    def launch():
        from fhir_server.auth import current_principal
        from fhir_server.fhir.errors import FhirError

        principal = current_principal()
        if principal.kind not in ("practitioner", "operator"):
            raise FhirError(
                403, "Only a professional's or the operator's EHR creates launch contexts.", "forbidden"
            )
        body = request.get_json(silent=True) or {}
        patient = body.get("patient")
        if not isinstance(patient, str) or not patient:
            raise FhirError(400, "A launch context needs 'patient' (a Patient id).", "required")
        patient = patient.removeprefix("Patient/")
        current_app.extensions["dmp"].repository.read("Patient", patient)  # 404/410 if unknown
        launch_id = secrets.token_urlsafe(24)
        doc = {
            "_id": launch_id,
            "patient": patient,
            "encounter": body.get("encounter"),
            "need_patient_banner": bool(body.get("need_patient_banner", False)),
            "created_by": principal.fhir_user,
            "created_by_kind": principal.kind,
            "client_id": principal.client_id,
            "expires_at": utcnow() + timedelta(seconds=service.config.launch_ttl),
        }
        service.store.launch.insert_one(doc)
        return json_response(
            {"launch": launch_id, "expires_in": service.config.launch_ttl, "iss": urls.fhir_base_url()},
            201,
            NO_STORE,
        )

    from fhir_server.auth.pages import register_pages

    register_pages(bp, service)
    app.register_blueprint(bp)
