"""Fixtures of the authorization-server tests: an app with init_auth, registered clients, helpers
that drive the browser flow (login, consent) over plain HTTP forms, and JWKS-based token checks."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwk, jwt

from fhir_server.app import create_app
from fhir_server.auth import init_auth, register_client
from fhir_server.auth.accounts import create_account
from fhir_server.config import Settings

REGISTRATION_TOKEN = "test-initial-access-token"
BASE = "http://localhost/fhir"
ISSUER = "http://localhost"
TOKEN_URL = "http://localhost/oauth2/token"
REDIRECT = "http://127.0.0.1:9999/callback"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def app(mongo_uri):
    settings = Settings(
        mongodb_uri=mongo_uri,
        database=f"dmp_auth_test_{uuid.uuid4().hex[:8]}",
        testing=True,
        extra={"auth": {"registration_token": REGISTRATION_TOKEN, "revocation_cache_seconds": 0}},
    )
    application = create_app(settings)
    if "dmp_auth" not in application.extensions:  # until the lead wires init_auth into create_app
        init_auth(application, settings)
    _add_probe(application)
    return application


def _add_probe(application):
    """A test-only protected route: what the lead's FHIR interactions will do with current_principal()."""
    from flask import jsonify

    from fhir_server.auth import current_principal

    @application.get("/fhir/_probe/whoami")
    def _whoami():
        p = current_principal()
        return jsonify(
            {
                "kind": p.kind,
                "fhir_user": p.fhir_user,
                "patient": p.patient,
                "scopes": str(p.scopes),
                "client_id": p.client_id,
                "token_id": p.token_id,
                "purpose_of_use": list(p.purpose_of_use),
                "professions": [list(x) for x in p.professions],
                "break_the_glass_reason": p.break_the_glass_reason,
                "network_address": p.network_address,
            }
        )


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """argon2id with library defaults costs ~0.4 s per hash on the 2-core CI machine: tests use minimal
    parameters (same algorithm and code path; production keeps the defaults)."""
    from argon2 import PasswordHasher

    from fhir_server.auth import accounts

    saved = accounts._hasher, accounts._DUMMY_HASH
    accounts._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    accounts._DUMMY_HASH = accounts._hasher.hash("dummy")
    yield
    accounts._hasher, accounts._DUMMY_HASH = saved


@pytest.fixture(autouse=True)
def _clean_auth(app):
    app.extensions["dmp_auth"].store.wipe()
    yield


@pytest.fixture()
def auth(app):
    return app.extensions["dmp_auth"]


@pytest.fixture()
def web(app):
    """A plain Flask test client (keeps cookies, like a browser)."""
    return app.test_client()


# ------------------------------------------------------------------ people and clients
@pytest.fixture()
def people(app, services, fixtures):
    """A patient, a minor with a legal representative, a GP with a PractitionerRole, the operator."""
    from fhir_server.auth.internal import create_resource

    store = app.extensions["dmp_auth"].store

    def create(res):
        return create_resource(services, BASE, res)["id"]

    patient = create(fixtures.make_patient())
    other = create(fixtures.make_patient(family="Durand", given="Marc", sex=1, rank="002"))
    minor = create(fixtures.make_patient(family="Petit", given="Léa", year=15, rank="003"))
    prac = create(fixtures.make_practitioner())
    create(
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{prac}"},
            "code": [
                {
                    "coding": [
                        {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/"
                            "TRE-G15-ProfessionSante",
                            "code": "10",
                        }
                    ]
                }
            ],
            "specialty": [
                {
                    "coding": [
                        {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/"
                            "TRE-R38-SpecialiteOrdinale",
                            "code": "SM54",
                        }
                    ]
                }
            ],
        }
    )
    rel = create(
        {
            "resourceType": "RelatedPerson",
            "patient": {"reference": f"Patient/{minor}"},
            "name": [{"family": "Petit", "given": ["Anne"]}],
        }
    )
    patient_ins = services.repository.read("Patient", patient).resource["identifier"][0]["value"]
    accounts = {
        "patient": create_account(
            store,
            kind="patient",
            logins=[patient_ins, "helene@example.org"],
            password=PASSWORD,
            fhir_user=f"Patient/{patient}",
            name="Hélène Lefèvre",
            patients=[patient],
        ),
        "gp": create_account(
            store,
            kind="practitioner",
            logins=["10003456789"],
            password=PASSWORD,
            fhir_user=f"Practitioner/{prac}",
            name="Dr Paul Martin",
            npi="810003456789",
        ),
        "parent": create_account(
            store,
            kind="related-person",
            logins=["anne@example.org"],
            password=PASSWORD,
            fhir_user=f"RelatedPerson/{rel}",
            name="Anne Petit",
            patients=[minor],
        ),
        "operator": create_account(
            store, kind="operator", logins=["operator"], password=PASSWORD, fhir_user=None, name="Opérateur"
        ),
    }
    return {
        "patient": patient,
        "other": other,
        "minor": minor,
        "practitioner": prac,
        "related": rel,
        "patient_ins": patient_ins,
        "accounts": accounts,
    }


USER_SCOPE = (
    "openid fhirUser profile launch launch/patient offline_access online_access patient/*.cruds "
    "user/*.cruds patient/*.read patient/*.write user/*.read"
)


@pytest.fixture()
def public_client(app):
    return register_client(app, "Appli publique", USER_SCOPE, public=True, redirect_uris=[REDIRECT])


@pytest.fixture()
def secret_client(app):
    return register_client(app, "Appli confidentielle", USER_SCOPE, secret=True, redirect_uris=[REDIRECT])


def make_key(alg: str, kid: str | None = None):
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:6]}"
    if alg.startswith("RS"):
        key = jwk.RSAKey.generate_key(2048, parameters={"kid": kid, "alg": alg}, private=True)
    else:
        key = jwk.ECKey.generate_key("P-384", parameters={"kid": kid, "alg": alg}, private=True)
    public = key.as_dict(private=False)
    public.update({"kid": kid, "alg": alg})
    return key, {"keys": [public]}


@pytest.fixture()
def backend(app):
    """A backend-services client (private_key_jwt, ES384) allowed system/Observation.rs and system/Patient.rs."""
    key, jwks = make_key("ES384")
    client = register_client(app, "Service d'import", "system/Observation.rs system/Patient.rs", jwks=jwks)
    return {"client": client, "key": key, "alg": "ES384"}


def client_assertion(
    client_id: str, key, alg: str, aud: str = TOKEN_URL, exp_in: int = 240, jti: str | None = None, **extra
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + exp_in,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
    }
    claims.update(extra)
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def assertion_form(client_id, key, alg, **kw) -> dict:
    return {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(client_id, key, alg, **kw),
    }


# ------------------------------------------------------------------ PKCE and the browser flow
def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client_id, scope, state="st-" + "x" * 10, challenge=None, **extra) -> dict:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": state,
        "aud": BASE,
        "code_challenge": challenge or pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
REQ_RE = re.compile(r'name="req" value="([^"]*)"')


def form_fields(html: str) -> dict:
    return {"csrf_token": CSRF_RE.search(html).group(1), "req": REQ_RE.search(html).group(1)}


def query_of(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def browser_login(
    web,
    params: dict,
    login: str,
    password: str = PASSWORD,
    scopes=None,
    purpose=None,
    btg_reason=None,
    patient=None,
    decision="approve",
    method="GET",
):
    """Drive /authorize -> login -> (picker) -> consent like a browser without JavaScript.
    Returns the final redirect Location to the client (or the last response if it stops earlier)."""
    if method == "GET":
        r = web.get("/oauth2/authorize?" + urlencode(params))
    else:
        r = web.post("/oauth2/authorize", data=params)
    if r.status_code != 303:
        return r
    r = web.get(r.headers["Location"])
    if "/login" in r.request.path:
        fields = form_fields(r.get_data(as_text=True))
        r = web.post("/oauth2/login", data={**fields, "login": login, "password": password})
        if r.status_code != 303:
            return r
        r = web.get(r.headers["Location"])
    if r.request.path.endswith("/patient"):
        if 'name="patient"' not in r.get_data(as_text=True):  # professionals search first
            r = web.get(r.request.full_path + f"&q={patient}")
        fields = form_fields(r.get_data(as_text=True))
        r = web.post("/oauth2/patient", data={**fields, "patient": patient})
        if r.status_code != 303:
            return r
        r = web.get(r.headers["Location"])
    if r.status_code != 200 or not r.request.path.endswith("/consent"):
        return r
    html = r.get_data(as_text=True)
    fields = form_fields(html)
    chosen = scopes if scopes is not None else re.findall(r'name="scope" value="([^"]+)"', html)
    data = {**fields, "scope": chosen, "decision": decision}
    if purpose:
        data["purpose"] = purpose
    if btg_reason:
        data["btg_reason"] = btg_reason
    return web.post("/oauth2/consent", data=data)


def exchange(web, code, verifier, client_id=None, auth=None, redirect_uri=REDIRECT, extra=None):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if client_id:
        form["client_id"] = client_id
    form.update(extra or {})
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return web.post("/oauth2/token", data=form, headers=headers)


def verify_with_jwks(web, token: str, audience=BASE, typ="at+jwt") -> dict:
    """Verify a token with the published JWKS only (what a resource server would do)."""
    keys = jwk.KeySet.import_key_set(web.get("/oauth2/jwks").get_json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header.get("typ") == typ
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        exp={"essential": True},
        aud={"essential": True, "value": audience},
    )
    registry.validate(claims)
    return claims


@pytest.fixture()
def login_flow(web, people, public_client):
    """Full standalone launch for the patient with the public client: returns the token response."""

    def run(scope="openid fhirUser launch/patient patient/*.rs offline_access", login=None):
        verifier, challenge = pkce_pair()
        params = authorize_params(public_client["client_id"], scope, challenge=challenge)
        r = browser_login(web, params, login or people["patient_ins"])
        assert r.status_code == 302, r.get_data(as_text=True)
        code = query_of(r.headers["Location"])["code"]
        t = exchange(web, code, verifier, client_id=public_client["client_id"])
        assert t.status_code == 200, t.get_data(as_text=True)
        return t.get_json()

    return run


@pytest.fixture(scope="session")
def live_server(app):
    """This directory's app (authentication on) served over real HTTP on a free loopback port."""
    from tests.conftest import serve_over_http

    yield from serve_over_http(app)
