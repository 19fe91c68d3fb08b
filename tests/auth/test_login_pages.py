"""The HTML side: CSRF, no user enumeration, rate limiting, second factor, languages, grant management."""

import logging
import re

from fhir_server.auth.accounts import create_account, new_totp_secret, totp_code
from tests.auth.conftest import PASSWORD, authorize_params, browser_login, form_fields, query_of


def login_page(web, public_client, lang=None):
    params = authorize_params(public_client["client_id"], "launch/patient patient/*.rs")
    if lang:
        params["lang"] = lang
    r = web.get("/oauth2/authorize", query_string=params)
    assert r.status_code == 303
    page = web.get(r.headers["Location"] + (f"&lang={lang}" if lang else ""))
    assert page.status_code == 200
    assert page.headers["X-Frame-Options"] == "DENY" and page.headers["Cache-Control"] == "no-store"
    return page


def post_login(web, page, login, password):
    return web.post(
        "/oauth2/login",
        data={**form_fields(page.get_data(as_text=True)), "login": login, "password": password},
    )


def test_pages_work_without_javascript_in_both_languages(web, people, public_client):
    fr = login_page(web, public_client).get_data(as_text=True)
    assert "<script" not in fr and 'lang="fr"' in fr and "Mot de passe" in fr
    en = login_page(web, public_client, lang="en").get_data(as_text=True)
    assert 'lang="en"' in en and "Password" in en
    r = web.get(
        "/oauth2/authorize",
        query_string=authorize_params(public_client["client_id"], "patient/*.rs"),
        headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"},
    )
    assert "Password" in web.get(
        r.headers["Location"], headers={"Accept-Language": "en-GB,en;q=0.9"}
    ).get_data(as_text=True)


def test_csrf_required(web, people, public_client):
    page = login_page(web, public_client)
    fields = form_fields(page.get_data(as_text=True))
    r = web.post(
        "/oauth2/login", data={"req": fields["req"], "login": people["patient_ins"], "password": PASSWORD}
    )
    assert r.status_code == 400
    r = web.post(
        "/oauth2/login",
        data={
            "req": fields["req"],
            "csrf_token": "forged",
            "login": people["patient_ins"],
            "password": PASSWORD,
        },
    )
    assert r.status_code == 400
    # a consent POST with a forged token grants nothing
    r = post_login(web, page, people["patient_ins"], PASSWORD)
    consent = web.get(r.headers["Location"])
    fields = form_fields(consent.get_data(as_text=True))
    r = web.post(
        "/oauth2/consent",
        data={"req": fields["req"], "csrf_token": "x", "decision": "approve", "scope": ["patient/*.rs"]},
    )
    assert r.status_code == 400 and "Location" not in r.headers


def test_no_user_enumeration(web, people, public_client):
    page = login_page(web, public_client)
    unknown = post_login(web, page, "nobody@example.org", "whatever")
    wrong = post_login(web, page, people["patient_ins"], "wrong password")
    assert unknown.status_code == wrong.status_code == 401

    def message(r):
        return re.search(r'class="error" role="alert">([^<]+)<', r.get_data(as_text=True)).group(1)

    assert message(unknown) == message(wrong)


def test_login_rate_limited(web, people, public_client):
    page = login_page(web, public_client)
    for _ in range(5):
        assert post_login(web, page, people["patient_ins"], "bad").status_code == 401
    # even the right password is refused during the window; same answer for an unknown login
    assert post_login(web, page, people["patient_ins"], PASSWORD).status_code == 429
    for _ in range(5):
        post_login(web, page, "ghost@example.org", "bad")
    assert post_login(web, page, "ghost@example.org", "bad").status_code == 429


def test_state_cannot_be_changed_after_the_authorize_request(web, people, public_client):
    params = authorize_params(public_client["client_id"], "launch/patient patient/*.rs", state="original")
    r = web.get("/oauth2/authorize", query_string=params)
    page = web.get(r.headers["Location"])
    r = post_login(web, page, people["patient_ins"], PASSWORD)
    consent = web.get(r.headers["Location"])
    fields = form_fields(consent.get_data(as_text=True))
    r = web.post(
        "/oauth2/consent",
        data={
            **fields,
            "decision": "approve",
            "scope": ["patient/*.rs"],
            "state": "forged",
            "redirect_uri": "https://evil.example/cb",
            "client_id": "other",
        },
    )
    assert r.status_code == 302
    q = query_of(r.headers["Location"])
    assert r.headers["Location"].startswith("http://127.0.0.1:9999/callback")
    assert q["state"] == "original"


def test_pending_request_bound_to_the_browser(app, web, people, public_client):
    r = web.get(
        "/oauth2/authorize", query_string=authorize_params(public_client["client_id"], "patient/*.rs")
    )
    stolen = r.headers["Location"]
    other_browser = app.test_client()
    page = other_browser.get(stolen)
    assert page.status_code == 400


def test_totp_second_factor(app, web, people, public_client, auth):
    secret = new_totp_secret()
    create_account(
        auth.store,
        kind="patient",
        logins=["totp@example.org"],
        password=PASSWORD,
        fhir_user=f"Patient/{people['other']}",
        name="Marc Durand",
        patients=[people["other"]],
        otp="totp",
        totp_secret=secret,
    )
    page = login_page(web, public_client)
    r = post_login(web, page, "totp@example.org", PASSWORD)
    assert r.status_code == 303 and "/oauth2/otp" in r.headers["Location"]
    otp_page = web.get(r.headers["Location"])
    fields = form_fields(otp_page.get_data(as_text=True))
    bad = web.post(
        "/oauth2/otp", data={**fields, "code": "000000" if totp_code(secret) != "000000" else "111111"}
    )
    assert bad.status_code == 401
    good = web.post("/oauth2/otp", data={**fields, "code": totp_code(secret)})
    assert good.status_code == 303 and "/oauth2/consent" in good.headers["Location"]


def test_logged_code_second_factor(app, web, people, public_client, auth, caplog):
    create_account(
        auth.store,
        kind="patient",
        logins=["code@example.org"],
        password=PASSWORD,
        fhir_user=f"Patient/{people['other']}",
        name="Marc Durand",
        patients=[people["other"]],
        otp="log",
    )
    page = login_page(web, public_client)
    with caplog.at_level(logging.WARNING, logger="fhir_server.auth.pages"):
        r = post_login(web, page, "code@example.org", PASSWORD)
    code = re.search(r"one-time login code for account \S+: (\d{6})", caplog.text).group(1)
    otp_page = web.get(r.headers["Location"])
    good = web.post("/oauth2/otp", data={**form_fields(otp_page.get_data(as_text=True)), "code": code})
    assert good.status_code == 303 and "/oauth2/consent" in good.headers["Location"]


def test_manage_page_lists_and_revokes(web, people, public_client, login_flow):
    body = login_flow()
    page = web.get("/oauth2/manage")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Appli publique" in html
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    gid = re.search(r'name="grant" value="([^"]+)"', html).group(1)
    r = web.post("/oauth2/manage", data={"csrf_token": csrf, "grant": gid})
    assert r.status_code == 200 and "Appli publique" not in r.get_data(as_text=True)
    assert (
        web.get(
            "/fhir/_probe/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
        ).status_code
        == 401
    )


def test_consent_lists_scopes_in_plain_words(web, people, public_client):
    params = authorize_params(
        public_client["client_id"], "launch/patient patient/Observation.rs offline_access"
    )
    r = web.get("/oauth2/authorize", query_string=params)
    page = web.get(r.headers["Location"])
    r = post_login(web, page, people["patient_ins"], PASSWORD)
    html = web.get(r.headers["Location"]).get_data(as_text=True)
    assert "Lire et rechercher les résultats et mesures" in html
    assert "Rester connecté" in html and "Hélène Lefèvre" in html


def test_refused_cases_issue_nothing(web, people, public_client):
    r = browser_login(
        web,
        authorize_params(public_client["client_id"], "patient/*.rs"),
        people["patient_ins"],
        password="wrong",
    )
    assert r.status_code == 401
