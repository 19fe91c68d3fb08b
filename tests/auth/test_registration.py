"""RFC 7591 dynamic registration behind an initial access token, and register_client()."""

import pytest

from fhir_server.auth import register_client
from tests.auth.conftest import REGISTRATION_TOKEN, make_key

AUTH = {"Authorization": f"Bearer {REGISTRATION_TOKEN}"}


def test_registration_needs_the_initial_access_token(web):
    meta = {
        "client_name": "x",
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "none",
    }
    r = web.post("/oauth2/register", json=meta)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = web.post("/oauth2/register", json=meta, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_register_public_confidential_and_backend(web):
    r = web.post(
        "/oauth2/register",
        headers=AUTH,
        json={
            "client_name": "Mon appli",
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "none",
            "scope": "openid fhirUser launch/patient patient/*.rs",
        },
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    assert (
        body["client_id"]
        and "client_secret" not in body
        and body["grant_types"] == ["authorization_code", "refresh_token"]
    )
    r = web.post(
        "/oauth2/register",
        headers=AUTH,
        json={
            "client_name": "Confidentielle",
            "redirect_uris": ["https://app.example/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": "user/*.rs",
        },
    )
    assert r.status_code == 201 and r.get_json()["client_secret"]
    _, jwks = make_key("RS384")
    r = web.post(
        "/oauth2/register",
        headers=AUTH,
        json={
            "client_name": "Backend",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks,
            "scope": "system/Patient.rs",
        },
    )
    assert r.status_code == 201 and r.get_json()["grant_types"] == ["client_credentials"]


@pytest.mark.parametrize(
    "meta,error",
    [
        (
            {"redirect_uris": ["http://app.example/cb"], "token_endpoint_auth_method": "none"},
            "invalid_redirect_uri",
        ),
        (
            {"redirect_uris": ["https://app.example/cb#x"], "token_endpoint_auth_method": "none"},
            "invalid_redirect_uri",
        ),
        ({"token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
        (
            {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"},
            "invalid_client_metadata",
        ),
        (
            {
                "redirect_uris": ["https://a.example/cb"],
                "token_endpoint_auth_method": "none",
                "scope": "system/*.rs",
            },
            "invalid_client_metadata",
        ),
        (
            {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "system/*.rs",
            },
            "invalid_client_metadata",
        ),
        (
            {
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]},
                "scope": "system/*.rs",
            },
            "invalid_client_metadata",
        ),
        (
            {
                "redirect_uris": ["https://a.example/cb"],
                "token_endpoint_auth_method": "none",
                "scope": "patient/*.zz",
            },
            "invalid_client_metadata",
        ),
    ],
)
def test_bad_metadata_refused(web, meta, error):
    r = web.post("/oauth2/register", headers=AUTH, json={"client_name": "bad", **meta})
    assert r.status_code == 400 and r.get_json()["error"] == error, r.get_json()


def test_register_client_cli_helper(app):
    out = register_client(app, "CLI", "user/*.rs", secret=True, redirect_uris=["https://x.example/cb"])
    assert out["client_secret"] and out["token_endpoint_auth_method"] == "client_secret_basic"
    out = register_client(
        app, "CLI public", "patient/*.rs", public=True, redirect_uris=["http://localhost:3000/cb"]
    )
    assert out["token_endpoint_auth_method"] == "none"
    with pytest.raises(ValueError):
        register_client(app, "two", "user/*.rs", public=True, secret=True)
