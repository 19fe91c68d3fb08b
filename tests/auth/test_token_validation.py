"""current_principal(): what the FHIR interactions rely on. Every refused token gives a 401
OperationOutcome with a WWW-Authenticate: Bearer challenge."""

import time

from joserfc import jwk, jwt

from tests.auth.conftest import BASE, ISSUER, assertion_form

PROBE = "/fhir/_probe/whoami"


def system_token(web, backend, scope="system/Observation.rs"):
    c = backend["client"]
    r = web.post(
        "/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            **assertion_form(c["client_id"], backend["key"], "ES384"),
        },
    )
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["access_token"]


def call(web, token=None, header=None):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return web.get(PROBE, headers=headers)


def assert_401(r, error="invalid_token"):
    assert r.status_code == 401, r.get_data(as_text=True)
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if error:
        assert f'error="{error}"' in challenge
    body = r.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def test_valid_token_gives_principal(web, backend):
    r = call(web, system_token(web, backend))
    assert r.status_code == 200
    p = r.get_json()
    assert p["kind"] == "system" and p["scopes"] == "system/Observation.rs"
    assert p["client_id"] == backend["client"]["client_id"] and p["token_id"]


def test_missing_token(web):
    body = assert_401(call(web), error=None)
    assert body["issue"][0]["code"] == "login"


def test_wrong_scheme_and_garbage(web, backend):
    assert_401(call(web, header="Basic Zm9vOmJhcg=="), "invalid_request")
    assert_401(call(web, header="Bearer"), "invalid_request")
    assert_401(call(web, "not-a-jwt"))
    assert_401(call(web, "a.b.c"))


def test_tampered_token(web, backend):
    token = system_token(web, backend)
    head, payload, sig = token.split(".")
    import base64
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.cruds"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_401(call(web, f"{head}.{forged}.{sig}"))


def test_token_signed_by_another_key(web, backend, auth):
    kid, _ = auth.keys.signing_key
    stranger = jwk.RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": BASE,
        "exp": now + 60,
        "iat": now,
        "jti": "x",
        "client_id": "c",
        "scope": "system/*.cruds",
        "sub": "c",
    }
    forged = jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims, stranger)
    assert_401(call(web, forged))


def _sign(auth, claims, typ="at+jwt"):
    kid, key = auth.keys.signing_key
    return jwt.encode({"alg": "RS256", "kid": kid, "typ": typ}, claims, key)


def test_expired_wrong_aud_wrong_iss_and_id_token(web, auth):
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": BASE,
        "exp": now + 60,
        "iat": now,
        "jti": "j1",
        "client_id": "c",
        "scope": "system/*.rs",
        "sub": "c",
    }
    assert call(web, _sign(auth, base)).status_code == 200
    body = assert_401(call(web, _sign(auth, {**base, "exp": now - 120})))
    assert body["issue"][0]["code"] == "expired"
    assert_401(call(web, _sign(auth, {**base, "aud": "https://other.example/fhir"})))
    assert_401(call(web, _sign(auth, {**base, "iss": "https://other.example"})))
    assert call(web, _sign(auth, {**base, "aud": BASE + "/"})).status_code == 200  # trailing slash tolerated
    assert_401(call(web, _sign(auth, base, typ="JWT")))  # an id_token is not an access token


def test_revoked_token(web, backend, auth):
    token = system_token(web, backend)
    assert call(web, token).status_code == 200
    r = web.post(
        "/oauth2/revoke",
        data={
            "token": token,
            "token_type_hint": "access_token",
            **assertion_form(backend["client"]["client_id"], backend["key"], "ES384"),
        },
    )
    assert r.status_code == 200
    assert_401(call(web, token))


def test_key_rotation_keeps_old_tokens_valid(web, backend, auth):
    old_token = system_token(web, backend)
    old_kid = auth.keys.signing_key[0]
    new_kid = auth.keys.rotate()
    assert new_kid != old_kid
    kids = [k["kid"] for k in web.get("/oauth2/jwks").get_json()["keys"]]
    assert old_kid in kids and new_kid in kids
    assert call(web, old_token).status_code == 200
    new_token = system_token(web, backend)
    assert jwt.decode(new_token, auth.keys.verification_key(new_kid)).header["kid"] == new_kid
    # once every token of the old key has expired, the key leaves the JWKS
    auth.store.db["auth_keys"].update_one(
        {"_id": old_kid}, {"$set": {"drop_after": auth.keys._keys[old_kid].retired_at}}
    )
    auth.keys.reload()
    assert old_kid not in [k["kid"] for k in web.get("/oauth2/jwks").get_json()["keys"]]
    assert_401(call(web, old_token))


def test_jwks_holds_public_keys_only(web):
    keys = web.get("/oauth2/jwks").get_json()["keys"]
    assert keys
    for k in keys:
        assert k["kid"] and k["kty"] == "RSA" and k["alg"] == "RS256"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(k)
