"""Authorization code + PKCE over HTTP: standalone and EHR launch, every kind of person, every refusal."""

import time
from datetime import UTC

from tests.auth.conftest import (
    BASE,
    ISSUER,
    PASSWORD,
    REDIRECT,
    authorize_params,
    browser_login,
    exchange,
    pkce_pair,
    query_of,
    verify_with_jwks,
)

PROBE = "/fhir/_probe/whoami"


def run_flow(web, client, login, scope, method="GET", **kw):
    verifier, challenge = pkce_pair()
    params = authorize_params(client["client_id"], scope, challenge=challenge, state="s-123", nonce="n-456")
    r = browser_login(web, params, login, method=method, **kw)
    assert r.status_code == 302, r.get_data(as_text=True)
    q = query_of(r.headers["Location"])
    assert r.headers["Location"].startswith(REDIRECT)
    assert q["state"] == "s-123" and q["iss"] == ISSUER
    t = exchange(web, q["code"], verifier, client_id=client["client_id"])
    assert t.status_code == 200, t.get_data(as_text=True)
    assert t.headers["Cache-Control"] == "no-store" and t.headers["Pragma"] == "no-cache"
    return t.get_json()


def whoami(web, token):
    r = web.get(PROBE, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_patient_standalone_launch(web, people, public_client):
    body = run_flow(
        web,
        public_client,
        people["patient_ins"],
        "openid fhirUser profile launch/patient patient/*.rs offline_access",
    )
    assert body["token_type"] == "Bearer" and isinstance(body["expires_in"], int)
    assert body["patient"] == people["patient"]
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"].endswith("/oauth2/smart-style.json")
    assert web.get("/oauth2/smart-style.json").status_code == 200
    assert set(body["scope"].split()) == {
        "openid",
        "fhirUser",
        "profile",
        "launch/patient",
        "patient/*.rs",
        "offline_access",
    }
    assert body["refresh_token"]
    claims = verify_with_jwks(web, body["access_token"])
    assert claims["fhirUser"] == f"Patient/{people['patient']}" and claims["patient"] == people["patient"]
    assert claims["client_id"] == public_client["client_id"] and claims["jti"]
    assert claims["extensions"]["ihe_iua"]["person_id"].startswith(people["patient_ins"])
    idt = verify_with_jwks(web, body["id_token"], audience=public_client["client_id"], typ="JWT")
    assert idt["iss"] == ISSUER == web.get("/fhir/.well-known/smart-configuration").get_json()["issuer"]
    assert isinstance(idt["sub"], str) and idt["fhirUser"] == f"Patient/{people['patient']}"
    assert idt["nonce"] == "n-456" and idt["name"] == "Hélène Lefèvre"
    p = whoami(web, body["access_token"])
    assert p["kind"] == "patient" and p["patient"] == people["patient"]


def test_login_with_email_and_authorize_post(web, people, public_client):
    body = run_flow(
        web, public_client, "Helene@Example.org", "launch/patient patient/Observation.rs", method="POST"
    )
    assert body["patient"] == people["patient"]
    assert "refresh_token" not in body and "id_token" not in body


def test_practitioner_picks_patient(web, people, public_client):
    body = run_flow(
        web,
        public_client,
        "10003456789",
        "openid fhirUser launch/patient patient/*.rs user/*.rs",
        patient=people["other"],
    )
    assert body["patient"] == people["other"]
    claims = verify_with_jwks(web, body["access_token"])
    iua = claims["extensions"]["ihe_iua"]
    assert {"code": "10"}.items() <= iua["subject_role"][0].items()
    assert any(r["code"] == "SM54" for r in iua["subject_role"])
    assert iua["national_provider_identifier"] == "810003456789"
    assert iua["purpose_of_use"][0]["code"] == "TREAT"
    p = whoami(web, body["access_token"])
    assert p["kind"] == "practitioner" and p["purpose_of_use"] == ["TREAT"]
    assert ["https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante", "10"] in p[
        "professions"
    ]
    assert p["network_address"] == "127.0.0.1"


def test_picker_searches_by_name_and_ins(web, people, public_client):
    params = authorize_params(public_client["client_id"], "launch/patient patient/*.rs")
    r = web.get("/oauth2/authorize", query_string=params)
    r = web.get(r.headers["Location"])
    from tests.auth.conftest import form_fields

    r = web.post(
        "/oauth2/login",
        data={**form_fields(r.get_data(as_text=True)), "login": "10003456789", "password": PASSWORD},
    )
    picker = r.headers["Location"]
    assert "/oauth2/patient" in picker
    html = web.get(picker + "&q=Durand").get_data(as_text=True)
    assert "Marc Durand" in html and "Hélène" not in html
    html = web.get(picker + "&q=" + people["patient_ins"]).get_data(as_text=True)
    assert "Hélène Lefèvre" in html


def test_break_the_glass_needs_a_reason(web, people, public_client):
    verifier, challenge = pkce_pair()
    params = authorize_params(public_client["client_id"], "launch/patient patient/*.rs", challenge=challenge)
    r = browser_login(web, params, "10003456789", patient=people["other"], purpose="BTG")
    assert r.status_code == 400 and "justification" in r.get_data(as_text=True).lower()
    body = run_flow(
        web,
        public_client,
        "10003456789",
        "launch/patient patient/*.rs",
        patient=people["other"],
        purpose="BTG",
        btg_reason="Patient inconscient aux urgences",
    )
    p = whoami(web, body["access_token"])
    assert (
        p["purpose_of_use"] == ["BTG"] and p["break_the_glass_reason"] == "Patient inconscient aux urgences"
    )


def test_legal_representative_acts_for_the_child(web, people, public_client):
    body = run_flow(web, public_client, "anne@example.org", "openid fhirUser launch/patient patient/*.rs")
    assert body["patient"] == people["minor"]
    p = whoami(web, body["access_token"])
    assert p["kind"] == "related-person" and p["fhir_user"] == f"RelatedPerson/{people['related']}"


def test_operator(web, people, public_client):
    body = run_flow(web, public_client, "operator", "openid user/*.rs")
    p = whoami(web, body["access_token"])
    assert p["kind"] == "operator" and p["fhir_user"] is None and "patient" not in body


def test_user_grants_a_subset(web, people, public_client):
    body = run_flow(
        web,
        public_client,
        people["patient_ins"],
        "launch/patient patient/*.rs patient/*.cruds offline_access",
        scopes=["launch/patient", "patient/*.rs"],
    )
    assert body["scope"] == "launch/patient patient/*.rs"
    assert "refresh_token" not in body


def test_user_denies(web, people, public_client):
    params = authorize_params(public_client["client_id"], "launch/patient patient/*.rs", state="deny-me")
    r = browser_login(web, params, people["patient_ins"], decision="deny")
    assert r.status_code == 302
    q = query_of(r.headers["Location"])
    assert q["error"] == "access_denied" and q["state"] == "deny-me" and "code" not in q


def test_confidential_symmetric_client(web, people, secret_client):
    verifier, challenge = pkce_pair()
    params = authorize_params(
        secret_client["client_id"], "launch/patient patient/*.rs online_access", challenge=challenge
    )
    r = browser_login(web, params, people["patient_ins"])
    code = query_of(r.headers["Location"])["code"]
    bad = exchange(web, code, verifier, auth=(secret_client["client_id"], "wrong"))
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"
    # a confidential client may not fall back to "none"
    r = browser_login(
        web,
        authorize_params(secret_client["client_id"], "launch/patient patient/*.rs", challenge=challenge),
        people["patient_ins"],
    )
    code = query_of(r.headers["Location"])["code"]
    none = exchange(web, code, verifier, client_id=secret_client["client_id"])
    assert none.status_code in (400, 401) and "access_token" not in none.get_json()
    r = browser_login(
        web,
        authorize_params(
            secret_client["client_id"], "launch/patient patient/*.rs online_access", challenge=challenge
        ),
        people["patient_ins"],
    )
    code = query_of(r.headers["Location"])["code"]
    good = exchange(web, code, verifier, auth=(secret_client["client_id"], secret_client["client_secret"]))
    assert good.status_code == 200 and good.get_json()["refresh_token"]


# ------------------------------------------------------------------ EHR launch
def practitioner_token(web, public_client):
    web = web.application.test_client()  # a browser of its own (no SSO with an earlier login)
    return run_flow(web, public_client, "10003456789", "openid fhirUser user/*.rs")["access_token"]


def test_ehr_launch(app, web, people, public_client):
    token = practitioner_token(web, public_client)
    r = web.post(
        "/oauth2/launch", json={"patient": people["other"]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    launch = r.get_json()["launch"]
    web2 = app.test_client()
    verifier, challenge = pkce_pair()
    params = authorize_params(
        public_client["client_id"], "openid fhirUser launch patient/*.rs", challenge=challenge, launch=launch
    )
    r = browser_login(web2, params, "10003456789")
    assert r.status_code == 302, r.get_data(as_text=True)
    body = exchange(
        web2, query_of(r.headers["Location"])["code"], verifier, client_id=public_client["client_id"]
    ).get_json()
    assert body["patient"] == people["other"] and body["need_patient_banner"] is False
    # a launch id is used once
    r = web2.get("/oauth2/authorize", query_string=params)
    assert r.status_code == 302 and query_of(r.headers["Location"])["error"] == "invalid_request"


def test_ehr_launch_refusals(app, web, people, public_client):
    r = web.post("/oauth2/launch", json={"patient": people["other"]})
    assert r.status_code == 401
    patient_token = run_flow(web, public_client, people["patient_ins"], "launch/patient patient/*.rs")[
        "access_token"
    ]
    r = web.post(
        "/oauth2/launch",
        json={"patient": people["patient"]},
        headers={"Authorization": f"Bearer {patient_token}"},
    )
    assert r.status_code == 403
    token = practitioner_token(web, public_client)
    r = web.post(
        "/oauth2/launch", json={"patient": "does-not-exist"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 404
    launch = web.post(
        "/oauth2/launch", json={"patient": people["other"]}, headers={"Authorization": f"Bearer {token}"}
    ).get_json()["launch"]
    # another person cannot use the practitioner's launch
    params = authorize_params(public_client["client_id"], "launch patient/*.rs", launch=launch)
    r = browser_login(app.test_client(), params, people["patient_ins"])
    assert r.status_code == 302 and query_of(r.headers["Location"])["error"] == "access_denied"
    # unknown launch, launch scope without launch parameter
    r = web.get(
        "/oauth2/authorize",
        query_string=authorize_params(public_client["client_id"], "launch patient/*.rs", launch="nope"),
    )
    assert query_of(r.headers["Location"])["error"] == "invalid_request"
    r = web.get(
        "/oauth2/authorize", query_string=authorize_params(public_client["client_id"], "launch patient/*.rs")
    )
    assert query_of(r.headers["Location"])["error"] == "invalid_request"


# ------------------------------------------------------------------ refused authorization requests
def authorize_error(web, params):
    r = web.get("/oauth2/authorize", query_string=params)
    assert r.status_code == 302, r.get_data(as_text=True)
    q = query_of(r.headers["Location"])
    assert "code" not in q
    return q


def test_pkce_is_required_and_s256_only(web, public_client):
    cid = public_client["client_id"]
    assert (
        authorize_error(web, authorize_params(cid, "patient/*.rs", code_challenge_method=None))["error"]
        == "invalid_request"
    )
    params = authorize_params(cid, "patient/*.rs")
    params.pop("code_challenge")
    params.pop("code_challenge_method")
    assert authorize_error(web, params)["error"] == "invalid_request"
    assert (
        authorize_error(web, authorize_params(cid, "patient/*.rs", code_challenge_method="plain"))["error"]
        == "invalid_request"
    )


def test_bad_requests_redirect_with_state(web, public_client):
    cid = public_client["client_id"]
    q = authorize_error(
        web, authorize_params(cid, "patient/*.rs", aud="https://evil.example/fhir", state="abc")
    )
    assert q["error"] == "invalid_request" and q["state"] == "abc"
    assert authorize_error(web, authorize_params(cid, "patient/*.rs", aud=None))["error"] == "invalid_request"
    assert (
        authorize_error(web, authorize_params(cid, "patient/*.rs", state=None))["error"] == "invalid_request"
    )
    assert authorize_error(web, authorize_params(cid, "system/*.rs"))["error"] == "invalid_scope"
    assert (
        authorize_error(web, authorize_params(cid, "user/*.cruds patient/Observation.xx"))["error"]
        == "invalid_scope"
    )
    assert (
        authorize_error(web, authorize_params(cid, "launch/encounter patient/*.rs"))["error"]
        == "invalid_scope"
    )
    assert (
        authorize_error(web, authorize_params(cid, "patient/*.rs", response_type="token"))["error"]
        == "unsupported_response_type"
    )


def test_trailing_slash_aud_accepted(web, people, public_client):
    r = web.get(
        "/oauth2/authorize",
        query_string=authorize_params(public_client["client_id"], "patient/*.rs", aud=BASE + "/"),
    )
    assert r.status_code == 303 and "/oauth2/login" in r.headers["Location"]


def test_unknown_client_or_redirect_uri_never_redirects(web, public_client):
    r = web.get("/oauth2/authorize", query_string=authorize_params("unknown-client", "patient/*.rs"))
    assert r.status_code == 400 and "Location" not in r.headers
    r = web.get(
        "/oauth2/authorize",
        query_string=authorize_params(
            public_client["client_id"], "patient/*.rs", redirect_uri="http://127.0.0.1:9999/other"
        ),
    )
    assert r.status_code == 400 and "Location" not in r.headers
    r = web.get(
        "/oauth2/authorize",
        query_string=authorize_params(
            public_client["client_id"], "patient/*.rs", redirect_uri=REDIRECT + "/"
        ),
    )
    assert r.status_code == 400 and "Location" not in r.headers


def code_for(web, people, client, verifier_challenge=None):
    verifier, challenge = verifier_challenge or pkce_pair()
    params = authorize_params(
        client["client_id"], "launch/patient patient/*.rs offline_access", challenge=challenge
    )
    r = browser_login(web, params, people["patient_ins"])
    return query_of(r.headers["Location"])["code"], verifier


def test_wrong_verifier_refused(web, people, public_client):
    code, verifier = code_for(web, people, public_client)
    r = exchange(web, code, pkce_pair()[0], client_id=public_client["client_id"])
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"
    # the code is burnt by the failed attempt
    r = exchange(web, code, verifier, client_id=public_client["client_id"])
    assert r.status_code == 400 and "access_token" not in r.get_json()


def test_missing_verifier_refused(web, people, public_client):
    code, _ = code_for(web, people, public_client)
    r = web.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": public_client["client_id"],
        },
    )
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"


def test_code_reuse_refused_and_revokes(web, people, public_client):
    code, verifier = code_for(web, people, public_client)
    first = exchange(web, code, verifier, client_id=public_client["client_id"])
    assert first.status_code == 200
    token = first.get_json()["access_token"]
    assert web.get(PROBE, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    again = exchange(web, code, verifier, client_id=public_client["client_id"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    # RFC 6749 4.1.2: what the code produced is revoked
    assert web.get(PROBE, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    r = web.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": public_client["client_id"],
            "refresh_token": first.get_json()["refresh_token"],
        },
    )
    assert r.status_code == 400


def test_expired_code_refused(web, people, public_client, auth):
    code, verifier = code_for(web, people, public_client)
    from datetime import datetime

    from fhir_server.auth.store import digest

    auth.store.codes.update_one({"_id": digest(code)}, {"$set": {"expires_at": datetime.now(UTC)}})
    time.sleep(0.01)
    r = exchange(web, code, verifier, client_id=public_client["client_id"])
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"


def test_wrong_redirect_uri_at_token_refused(web, people, public_client):
    code, verifier = code_for(web, people, public_client)
    r = exchange(
        web, code, verifier, client_id=public_client["client_id"], redirect_uri="http://127.0.0.1:9999/x"
    )
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"


def test_code_bound_to_client(app, web, people, public_client):
    from fhir_server.auth import register_client

    other = register_client(
        app, "other", "patient/*.rs launch/patient", public=True, redirect_uris=[REDIRECT]
    )
    code, verifier = code_for(web, people, public_client)
    r = exchange(web, code, verifier, client_id=other["client_id"])
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_grant"


def test_unregistered_client_at_token(web):
    r = exchange(web, "whatever", pkce_pair()[0], client_id="nobody")
    assert r.status_code in (400, 401) and r.get_json()["error"] == "invalid_client"
    r = web.post(
        "/oauth2/token",
        data={"grant_type": "password", "username": "x", "password": "y", "client_id": "nobody"},
    )
    assert r.status_code == 400 and r.get_json()["error"] == "unsupported_grant_type"
    r = web.post("/oauth2/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"
