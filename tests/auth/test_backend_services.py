"""Backend services: client_credentials + private_key_jwt (RS384 / ES384), every refused case."""

import time
import uuid

import pytest

from fhir_server.auth import register_client
from tests.auth.conftest import TOKEN_URL, assertion_form, make_key, verify_with_jwks

FORM = {"grant_type": "client_credentials"}


def token(web, form):
    return web.post("/oauth2/token", data=form)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials_with_each_algorithm(app, web, alg):
    key, jwks = make_key(alg)
    client = register_client(app, f"backend {alg}", "system/*.rs", jwks=jwks)
    r = token(
        web, {**FORM, "scope": "system/Observation.rs", **assertion_form(client["client_id"], key, alg)}
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    body = r.get_json()
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    assert body["scope"] == "system/Observation.rs"
    assert "refresh_token" not in body and "id_token" not in body
    claims = verify_with_jwks(web, body["access_token"])
    assert claims["client_id"] == client["client_id"] and claims["sub"] == client["client_id"]
    assert claims["scope"] == "system/Observation.rs" and claims["extensions"]["dmp"]["kind"] == "system"
    who = web.get("/fhir/_probe/whoami", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (
        who.status_code == 200 and who.get_json()["kind"] == "system" and who.get_json()["fhir_user"] is None
    )


def test_default_scope_is_the_registration(web, backend):
    c = backend["client"]
    r = token(web, {**FORM, **assertion_form(c["client_id"], backend["key"], "ES384")})
    assert r.status_code == 200 and r.get_json()["scope"] == "system/Observation.rs system/Patient.rs"


def refused(r, error, status=400):
    assert r.status_code in ((status,) if isinstance(status, int) else status), r.get_data(as_text=True)
    body = r.get_json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return body


def test_scope_beyond_registration_refused(web, backend):
    c = backend["client"]
    refused(
        token(
            web,
            {
                **FORM,
                "scope": "system/DocumentReference.rs",
                **assertion_form(c["client_id"], backend["key"], "ES384"),
            },
        ),
        "invalid_scope",
    )
    refused(
        token(
            web,
            {
                **FORM,
                "scope": "system/Observation.cruds",
                **assertion_form(c["client_id"], backend["key"], "ES384"),
            },
        ),
        "invalid_scope",
    )
    refused(
        token(
            web,
            {
                **FORM,
                "scope": "patient/Observation.rs",
                **assertion_form(c["client_id"], backend["key"], "ES384"),
            },
        ),
        "invalid_scope",
    )


def test_jti_replay_refused(web, backend):
    c = backend["client"]
    form = {**FORM, **assertion_form(c["client_id"], backend["key"], "ES384", jti="same-jti")}
    assert token(web, form).status_code == 200
    refused(token(web, form), "invalid_client", (400, 401))


def test_exp_more_than_five_minutes_ahead_refused(web, backend):
    c = backend["client"]
    refused(
        token(web, {**FORM, **assertion_form(c["client_id"], backend["key"], "ES384", exp_in=3600)}),
        "invalid_client",
        (400, 401),
    )


def test_expired_assertion_refused(web, backend):
    c = backend["client"]
    refused(
        token(web, {**FORM, **assertion_form(c["client_id"], backend["key"], "ES384", exp_in=-120)}),
        "invalid_client",
        (400, 401),
    )


def test_wrong_audience_refused(web, backend):
    c = backend["client"]
    refused(
        token(
            web,
            {
                **FORM,
                **assertion_form(
                    c["client_id"], backend["key"], "ES384", aud="https://elsewhere.example/token"
                ),
            },
        ),
        "invalid_client",
        (400, 401),
    )


def test_wrong_key_refused(web, backend):
    other, _ = make_key("ES384", kid=backend["key"].kid)
    refused(
        token(web, {**FORM, **assertion_form(backend["client"]["client_id"], other, "ES384")}),
        "invalid_client",
        (400, 401),
    )


def test_weak_or_other_algorithms_refused(app, web):
    from joserfc import jwk, jwt

    key = jwk.RSAKey.generate_key(2048, parameters={"kid": "no-alg"}, private=True)
    jwks = {"keys": [{**key.as_dict(private=False), "kid": "no-alg"}]}
    client = register_client(app, "rs256 client", "system/*.rs", jwks=jwks)

    now = int(time.time())
    claims = {
        "iss": client["client_id"],
        "sub": client["client_id"],
        "aud": TOKEN_URL,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    rs256 = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])
    refused(
        token(
            web,
            {
                **FORM,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": rs256,
            },
        ),
        "invalid_client",
        (400, 401),
    )
    none_alg = (
        "eyJhbGciOiJub25lIn0."
        + jwt.encode({"alg": "RS384", "kid": key.kid}, claims, key, algorithms=["RS384"]).split(".")[1]
        + "."
    )
    refused(
        token(
            web,
            {
                **FORM,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": none_alg,
            },
        ),
        "invalid_client",
        (400, 401),
    )


def test_unregistered_client_refused(web):
    key, _ = make_key("ES384")
    refused(token(web, {**FORM, **assertion_form("nobody", key, "ES384")}), "invalid_client", (400, 401))


def test_client_credentials_needs_private_key_jwt(app, web, secret_client):
    import base64

    basic = base64.b64encode(
        f"{secret_client['client_id']}:{secret_client['client_secret']}".encode()
    ).decode()
    r = web.post(
        "/oauth2/token", data={**FORM, "scope": "user/*.rs"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert r.status_code in (400, 401) and r.get_json()["error"] in ("invalid_client", "unauthorized_client")


def test_jwks_url_registration(app, web, live_server):
    """A client registered with a jwks_uri (served here by a loopback URL of this very server)."""
    import httpx

    key, jwks = make_key("RS384")
    holder = register_client(app, "jwks holder", "system/Patient.rs", jwks=jwks)  # only to publish the keys
    del holder
    # publish the client's keys through the smart-style-like static route: use a tiny in-test HTTP server
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            payload = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_port}/jwks.json"
        client = register_client(app, "jwks_uri client", "system/Patient.rs", jwks_uri=uri)
        base = live_server.rsplit("/fhir", 1)[0]
        form = {**FORM, **assertion_form(client["client_id"], key, "RS384", aud=f"{base}/oauth2/token")}
        r = httpx.post(f"{base}/oauth2/token", data=form)
        assert r.status_code == 200, r.text
        assert r.json()["scope"] == "system/Patient.rs"
    finally:
        server.shutdown()
