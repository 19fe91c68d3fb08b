"""Discovery documents, CORS, public base URL and trusted proxies, plain http only on loopback."""

import uuid

import pytest

from fhir_server.app import create_app
from fhir_server.auth import init_auth, smart_urls
from fhir_server.config import Settings

REQUIRED = [
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "token_endpoint_auth_methods_supported",
    "grant_types_supported",
    "registration_endpoint",
    "scopes_supported",
    "response_types_supported",
    "introspection_endpoint",
    "revocation_endpoint",
    "capabilities",
    "code_challenge_methods_supported",
]


def test_smart_configuration(web):
    r = web.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    doc = r.get_json()
    for field in REQUIRED:
        assert field in doc, field
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt",
        "client_secret_basic",
        "none",
    }
    assert {
        "launch-ehr",
        "launch-standalone",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "permission-v1",
        "permission-v2",
        "authorize-post",
        "context-ehr-patient",
        "context-standalone-patient",
    } <= set(doc["capabilities"])
    assert doc["issuer"] == "http://localhost"
    for field in (
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "registration_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "management_endpoint",
    ):
        assert doc[field].startswith("http://localhost/oauth2/")
    pre = web.open(
        "/fhir/.well-known/smart-configuration",
        method="OPTIONS",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"


def test_openid_configuration_under_the_issuer(web):
    smart = web.get("/fhir/.well-known/smart-configuration").get_json()
    doc = web.get("/.well-known/openid-configuration").get_json()
    assert doc["issuer"] == smart["issuer"] and doc["jwks_uri"] == smart["jwks_uri"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "fhirUser" in doc["claims_supported"]


def test_token_endpoint_cors_preflight(web):
    r = web.open(
        "/oauth2/token",
        method="OPTIONS",
        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]


def test_smart_urls_for_capability_statement(app):
    with app.app_context():
        u = smart_urls("https://dmp.example.org/fhir/")
    assert u["authorize"] == "https://dmp.example.org/oauth2/authorize"
    assert u["token"] == "https://dmp.example.org/oauth2/token"
    assert set(u) >= {"authorize", "token", "register", "revoke", "introspect"}


@pytest.fixture(scope="module")
def make_app(mongo_uri):
    def build(**extra):
        settings = Settings(
            mongodb_uri=mongo_uri, database=f"dmp_auth_cfg_{uuid.uuid4().hex[:8]}", testing=True, **extra
        )
        application = create_app(settings)
        if "dmp_auth" not in application.extensions:
            init_auth(application, settings)
        return application

    return build


def test_public_base_url_drives_every_url(make_app):
    application = make_app(public_base_url="https://dmp.example.org/fhir")
    doc = (
        application.test_client()
        .get("/fhir/.well-known/smart-configuration", base_url="https://internal:8080")
        .get_json()
    )
    assert doc["issuer"] == "https://dmp.example.org"
    assert doc["token_endpoint"] == "https://dmp.example.org/oauth2/token"


def test_plain_http_public_url_only_on_loopback(mongo_uri):
    settings = Settings(
        mongodb_uri=mongo_uri,
        database=f"dmp_auth_cfg_{uuid.uuid4().hex[:8]}",
        testing=True,
        public_base_url="http://dmp.example.org/fhir",
    )
    with pytest.raises(ValueError):
        application = create_app(settings)  # create_app calls init_auth
        init_auth(application, settings)


def test_plain_http_refused_off_loopback(web):
    r = web.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, base_url="http://dmp.example.org"
    )
    assert r.status_code == 400 and "HTTPS" in r.get_json()["error_description"]


def test_forwarded_headers_only_from_trusted_proxies(make_app, monkeypatch):
    monkeypatch.setenv("DMP_TRUSTED_PROXIES", "127.0.0.1")
    trusting = make_app().test_client()
    doc = trusting.get(
        "/fhir/.well-known/smart-configuration",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dmp.example.org"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    ).get_json()
    assert doc["issuer"] == "https://dmp.example.org"
    doc = trusting.get(
        "/fhir/.well-known/smart-configuration",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
        environ_base={"REMOTE_ADDR": "10.9.9.9"},
    ).get_json()
    assert doc["issuer"] == "http://localhost"
    monkeypatch.delenv("DMP_TRUSTED_PROXIES")
    plain = make_app().test_client()
    doc = plain.get(
        "/fhir/.well-known/smart-configuration",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
    ).get_json()
    assert doc["issuer"] == "http://localhost"


def test_keys_dir(make_app, monkeypatch, tmp_path):
    monkeypatch.setenv("DMP_KEYS_DIR", str(tmp_path))
    first = make_app()
    kid = first.test_client().get("/oauth2/jwks").get_json()["keys"][0]["kid"]
    assert (tmp_path / "keys.json").exists() and oct((tmp_path / "keys.json").stat().st_mode)[-3:] == "600"
    second = make_app()  # another process / database: same keys from the directory
    assert second.test_client().get("/oauth2/jwks").get_json()["keys"][0]["kid"] == kid


def test_demo_accounts(app, web):
    from fhir_server.auth import ensure_demo_accounts

    rows = ensure_demo_accounts(app)
    roles = {r["role"] for r in rows}
    assert {"patient", "gp", "nurse", "representative", "operator", "client"} <= roles
    again = ensure_demo_accounts(app)  # idempotent
    assert [r["login"] for r in again] == [r["login"] for r in rows]
