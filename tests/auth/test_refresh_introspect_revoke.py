"""Refresh tokens (rotation, binding, narrowing), RFC 7662 introspection, RFC 7009 revocation."""

import base64

from fhir_server.auth import register_client
from tests.auth.conftest import REDIRECT, assertion_form

PROBE = "/fhir/_probe/whoami"


def refresh(web, client_id, token, scope=None, auth=None):
    form = {"grant_type": "refresh_token", "refresh_token": token}
    if client_id:
        form["client_id"] = client_id
    if scope:
        form["scope"] = scope
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return web.post("/oauth2/token", data=form, headers=headers)


def test_no_refresh_token_without_offline_or_online(login_flow):
    assert "refresh_token" not in login_flow("launch/patient patient/*.rs")


def test_online_access_gives_a_refresh_token(login_flow):
    assert login_flow("launch/patient patient/*.rs online_access")["refresh_token"]


def test_refresh_rotates_and_detects_replay(web, login_flow, public_client):
    cid = public_client["client_id"]
    first = login_flow()
    r1 = refresh(web, cid, first["refresh_token"])
    assert r1.status_code == 200, r1.get_data(as_text=True)
    b1 = r1.get_json()
    assert b1["refresh_token"] != first["refresh_token"] and b1["patient"] == first["patient"]
    assert b1["scope"] == first["scope"] and b1["id_token"]
    assert r1.headers["Cache-Control"] == "no-store"
    # grace: the previous token still works until its successor is used once (lost response retry)
    r1b = refresh(web, cid, first["refresh_token"])
    assert r1b.status_code == 200
    b1 = r1b.get_json()  # the retry's successor replaces the lost one
    r2 = refresh(web, cid, b1["refresh_token"])
    assert r2.status_code == 200
    b2 = r2.get_json()
    # now the first one is superseded: presenting it again is a replay -> the whole grant is revoked
    replay = refresh(web, cid, first["refresh_token"])
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert refresh(web, cid, b2["refresh_token"]).status_code == 400
    assert web.get(PROBE, headers={"Authorization": f"Bearer {b2['access_token']}"}).status_code == 401


def test_refresh_scope_narrowing_only(web, login_flow, public_client):
    cid = public_client["client_id"]
    first = login_flow("openid fhirUser launch/patient patient/*.rs offline_access")
    narrowed = refresh(web, cid, first["refresh_token"], scope="patient/Observation.rs launch/patient")
    assert narrowed.status_code == 200
    assert narrowed.get_json()["scope"] == "patient/Observation.rs launch/patient"
    widened = refresh(web, cid, narrowed.get_json()["refresh_token"], scope="patient/*.cruds")
    assert widened.status_code == 400 and widened.get_json()["error"] == "invalid_scope"


def test_refresh_bound_to_client(app, web, login_flow):
    first = login_flow()
    other = register_client(
        app, "other", "patient/*.rs launch/patient offline_access", public=True, redirect_uris=[REDIRECT]
    )
    r = refresh(web, other["client_id"], first["refresh_token"])
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    assert refresh(web, "nobody", first["refresh_token"]).get_json()["error"] == "invalid_client"
    assert refresh(web, None, "garbage").status_code in (400, 401)


def test_introspection(web, login_flow, public_client, backend):
    body = login_flow()
    c = backend["client"]

    def introspect(token):
        return web.post(
            "/oauth2/introspect",
            data={"token": token, **assertion_form(c["client_id"], backend["key"], "ES384")},
        )

    r = introspect(body["access_token"])
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    info = r.get_json()
    assert info["active"] is True and info["patient"] == body["patient"]
    assert info["fhirUser"].startswith("Patient/") and info["client_id"] == public_client["client_id"]
    assert info["scope"] == body["scope"] and isinstance(info["exp"], int)
    assert info["extensions"]["dmp"]["kind"] == "patient"
    rt = introspect(body["refresh_token"]).get_json()
    assert rt["active"] is True and rt["patient"] == body["patient"]
    assert introspect("garbage").get_json() == {"active": False}
    assert introspect("a.b.c").get_json() == {"active": False}
    # the public client may introspect its own tokens, not others'
    own = web.post(
        "/oauth2/introspect", data={"token": body["access_token"], "client_id": public_client["client_id"]}
    )
    assert own.get_json()["active"] is True
    # unauthenticated callers are refused
    r = web.post("/oauth2/introspect", data={"token": body["access_token"]})
    assert r.status_code in (400, 401) and r.get_json()["error"] == "invalid_client"


def test_revoke_refresh_token_revokes_the_grant(web, login_flow, public_client):
    cid = public_client["client_id"]
    body = login_flow()
    r = web.post(
        "/oauth2/revoke",
        data={"token": body["refresh_token"], "token_type_hint": "refresh_token", "client_id": cid},
    )
    assert r.status_code == 200
    assert refresh(web, cid, body["refresh_token"]).status_code == 400
    assert web.get(PROBE, headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    # revoking garbage or an already revoked token is still 200 (RFC 7009)
    assert web.post("/oauth2/revoke", data={"token": "garbage", "client_id": cid}).status_code == 200
    assert (
        web.post("/oauth2/revoke", data={"token": body["refresh_token"], "client_id": cid}).status_code == 200
    )


def test_revoke_only_own_tokens(app, web, login_flow):
    body = login_flow()
    other = register_client(app, "other", "patient/*.rs", public=True, redirect_uris=[REDIRECT])
    assert (
        web.post(
            "/oauth2/revoke", data={"token": body["access_token"], "client_id": other["client_id"]}
        ).status_code
        == 200
    )
    assert web.get(PROBE, headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 200
    r = web.post(
        "/oauth2/revoke",
        data={"token": body["access_token"], "token_type_hint": "id_token", "client_id": other["client_id"]},
    )
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_token_type"
