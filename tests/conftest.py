"""Test fixtures: a real MongoDB wire-protocol server for the whole session (mongod, else FerretDB).

The suite never falls back to the in-process store: if no real server starts, the session fails.
MONGODB_URI_TESTS points the suite at an already running server instead.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.fhir.nir import ins_identifier, make_nir

ROOT = Path(__file__).resolve().parent.parent
# Apps built by the suite deliver Subscriptions only when a test drives the worker
# (tests/subscriptions): no idle delivery thread per app polling a database that stops first.
os.environ.setdefault("DMP_SUBSCRIPTIONS_WORKER", "0")


def load_script(name: str):
    """A module of scripts/ (not a package), imported once under its own name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mongo_uri():
    external = os.environ.get("MONGODB_URI_TESTS")
    if external:
        yield external
        return
    dbserver = load_script("dbserver")
    handle = dbserver.start_server()
    print(f"\n[tests] database server: {handle.kind} at {handle.uri}", file=sys.stderr)
    try:
        yield handle.uri
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def open_app(mongo_uri):
    """The app in open mode (every request acts as the operator): for the REST and search layers.
    The access policy and SMART are tested with tokens in tests/policy, tests/audit and tests/auth."""
    settings = Settings(mongodb_uri=mongo_uri, database=f"dmp_test_{uuid.uuid4().hex[:8]}", testing=True, auth_required=False)
    return create_app(settings)


@pytest.fixture(scope="session")
def app(open_app):
    return open_app


@pytest.fixture()
def services(app):
    return app.extensions["dmp"]


@pytest.fixture(autouse=True)
def _clean_database(request):
    """Every test starts from empty collections (indexes are kept: creating them is slow)."""
    if "app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    db = app.extensions["dmp"].repository.db
    for name in ("resources", "audit_events", "history", "transactions", "blobs"):
        db[name].delete_many({})
    yield


class FhirClient:
    """A thin wrapper over Flask's test client that speaks FHIR JSON."""

    def __init__(self, client):
        self.client = client

    def _headers(self, headers, content_type="application/fhir+json"):
        out = {"Accept": "application/fhir+json"}
        if content_type:
            out["Content-Type"] = content_type
        out.update(headers or {})
        return out

    def get(self, url, headers=None):
        return self.client.get(url, headers=self._headers(headers, None))

    def post(self, url, json=None, headers=None, data=None, content_type="application/fhir+json"):
        return self.client.post(url, json=json, data=data, headers=self._headers(headers, content_type))

    def put(self, url, json=None, headers=None, data=None, content_type="application/fhir+json"):
        return self.client.put(url, json=json, data=data, headers=self._headers(headers, content_type))

    def patch(self, url, ops, headers=None):
        import json as _json

        return self.client.patch(
            url, data=_json.dumps(ops), headers=self._headers(headers, "application/json-patch+json")
        )

    def delete(self, url, headers=None):
        return self.client.delete(url, headers=self._headers(headers, None))


@pytest.fixture()
def client(app):
    return FhirClient(app.test_client())


def serve_over_http(application):
    """Serve an app with waitress on a free loopback port; yields its FHIR base URL."""
    from waitress.server import create_server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = create_server(application, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/fhir"
    server.close()


@pytest.fixture(scope="session")
def live_server(open_app):
    """The open-mode app served over real HTTP."""
    yield from serve_over_http(open_app)


# ------------------------------------------------------------------ realistic French fixtures
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
LOINC = "http://loinc.org"


def make_patient(family="Lefèvre", given="Hélène", sex=2, year=80, month=1, dept="75", rank="001", **extra):
    nir = make_nir(sex, year, month, dept, "056", rank)
    patient = {
        "resourceType": "Patient",
        "identifier": [ins_identifier(nir)],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "female" if sex == 2 else "male",
        "birthDate": f"19{year:02d}-{month:02d}-15",
    }
    patient.update(extra)
    return patient


def make_practitioner(family="Martin", given="Paul", rpps="10003456789"):
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": RPPS, "value": rpps}, {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps}],
        "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
    }


def make_document(patient_ref, author_ref=None, loinc="11488-4", date="2024-03-15T10:00:00+01:00", title="CR"):
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": patient_ref},
        "date": date,
        "description": title,
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}],
        "content": [{"attachment": {"contentType": "text/plain", "title": title}}],
        "context": {"period": {"start": date}},
    }
    if author_ref:
        doc["author"] = [{"reference": author_ref}]
    return doc


@pytest.fixture()
def fixtures():
    return sys.modules[__name__]
