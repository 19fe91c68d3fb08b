"""Schemathesis against the served GET /openapi.json: no 5xx, and every response is one the document
describes (status code, media type, body schema, headers).

Two servers on loopback, each fuzzed through the document it serves:
- the open-mode app (auth off), over a seeded database so reads, histories, $everything and Binary
  content also meet real resources;
- the app that requires SMART tokens, called without one (or with the made-up bearer tokens
  schemathesis generates for the documented scheme): every FHIR route answers 401 with an
  OperationOutcome and a Bearer challenge; what the document marks public (security: []) is not refused.

Bounded and reproducible: derandomized Hypothesis (the same cases every run), no example database,
MAX_EXAMPLES cases per operation (valid and invalid inputs), a per-case deadline, a request timeout.
About 25 operations x 2 servers x 12 cases: well under a minute.

Schemathesis's own pytest plugin (`schemathesis.pytest.from_fixture`) does not run under pytest 9.2
(it sets `Function._nodeid`), so the operations are driven through its Python API: one Hypothesis
test per operation over `APIOperation.as_strategy`, every check applied by `case.call_and_validate`,
and the test fails with each failing operation's report.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter, defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import make_document, make_patient, make_practitioner, serve_over_http

MAX_EXAMPLES = int(os.environ.get("DMP_SCHEMATHESIS_EXAMPLES", "12"))  # more for a local deep run
REQUEST_TIMEOUT = 30  # s
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=10_000,  # ms per case: generous for a shared 2-core machine, still catches a hang
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
METHOD_ORDER = ["options", "get", "post", "put", "patch", "delete"]

# Resources a fuzzed {rid} may be swapped for, so that reads and writes also meet existing data.
SEEDED = {
    "Patient": "p-schemathesis",
    "Practitioner": "dr-schemathesis",
    "Organization": "org-schemathesis",
    "DocumentReference": "doc-schemathesis",
    "Binary": "bin-schemathesis",
}


def _seed(app) -> None:
    repo = app.extensions["dmp"].repository
    patient = make_patient(id=SEEDED["Patient"])
    repo.update("Patient", SEEDED["Patient"], patient)
    repo.update("Patient", SEEDED["Patient"], {**patient, "active": True})  # a second version for vread
    repo.update("Practitioner", SEEDED["Practitioner"], {**make_practitioner(), "id": SEEDED["Practitioner"]})
    repo.update("Organization", SEEDED["Organization"],
                {"resourceType": "Organization", "id": SEEDED["Organization"], "name": "CH Test"})
    repo.update("Binary", SEEDED["Binary"],
                {"resourceType": "Binary", "id": SEEDED["Binary"], "contentType": "text/plain",
                 "data": "Q29tcHRlIHJlbmR1IGRlIHRlc3Q="})
    document = make_document(f"Patient/{SEEDED['Patient']}", f"Practitioner/{SEEDED['Practitioner']}")
    document["content"][0]["attachment"]["url"] = f"Binary/{SEEDED['Binary']}"
    repo.update("DocumentReference", SEEDED["DocumentReference"], {**document, "id": SEEDED["DocumentReference"]})


def _swap_in_seeded_ids(schema) -> None:
    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        path = context.operation.path if context.operation is not None else ""
        rt = "Binary" if path.startswith("/fhir/Binary/") else (path_parameters or {}).get("rt", "Patient")
        if not path_parameters or "rid" not in path_parameters or rt not in SEEDED:
            return st.just(path_parameters)
        seeded = {**path_parameters, "rid": SEEDED[rt]}
        if "vid" in path_parameters:
            seeded["vid"] = "1"
        return st.sampled_from([path_parameters, seeded])


def _load(base_url: str):
    root = base_url.rsplit("/fhir", 1)[0]
    # An explicit default config: no schemathesis.toml is looked for.
    return schemathesis.openapi.from_url(f"{root}/openapi.json", config=schemathesis.Config()), root


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(_describe(e) for e in exc.exceptions) or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fuzz_operation(schema, operation, root: str, statuses: Counter, extra_check) -> None:
    """One Hypothesis test: MAX_EXAMPLES cases of this operation, each sent and checked."""
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, hooks=schema.hooks),
        operation.as_strategy(GenerationMode.NEGATIVE, hooks=schema.hooks),
    )

    @HYPOTHESIS
    @given(case=strategy)
    def run(case):
        response = case.call_and_validate(base_url=root, checks=CHECKS, timeout=REQUEST_TIMEOUT)
        statuses[response.status_code] += 1
        if extra_check is not None:
            extra_check(case, response)

    run()


def _fuzz(schema, root: str, extra_check=None) -> list[str]:
    """Every operation of the document with valid and invalid inputs; one failure report per failing operation."""
    failures = []
    statuses: dict[str, Counter] = defaultdict(Counter)
    operations = [result.ok() for result in schema.get_all_operations()]  # an invalid document raises here
    assert len(operations) >= 20, [op.label for op in operations]
    # reads first, deletes last: the seeded resources stay there for as long as possible
    operations.sort(key=lambda op: METHOD_ORDER.index(op.method.lower()))
    for operation in operations:
        try:
            _fuzz_operation(schema, operation, root, statuses[operation.label], extra_check)
        except BaseException as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            failures.append(f"{operation.label}:\n{_describe(exc)}")
    for label, counts in statuses.items():  # shown by pytest on failure, or with -s
        print(f"{label}: {dict(sorted(counts.items()))}")
    return failures


# ------------------------------------------------------------------ open mode, seeded
@pytest.fixture(scope="module")
def open_server(mongo_uri):
    settings_ = Settings(mongodb_uri=mongo_uri, database=f"dmp_st_{uuid.uuid4().hex[:8]}", testing=True,
                         auth_required=False)
    app = create_app(settings_)
    _seed(app)
    yield from serve_over_http(app)
    app.extensions["dmp"].repository.db.client.drop_database(settings_.database)


def test_open_mode_conforms_to_its_openapi_document(open_server):
    schema, root = _load(open_server)
    _swap_in_seeded_ids(schema)
    failures = _fuzz(schema, root)
    assert not failures, "\n\n".join(failures)


# ------------------------------------------------------------------ tokens required, none valid
@pytest.fixture(scope="module")
def secured_server(mongo_uri):
    settings_ = Settings(mongodb_uri=mongo_uri, database=f"dmp_st_auth_{uuid.uuid4().hex[:8]}", testing=True)
    app = create_app(settings_)
    yield from serve_over_http(app)
    app.extensions["dmp"].repository.db.client.drop_database(settings_.database)


def _refused_without_a_valid_token(case, response) -> None:
    if case.operation.definition.raw.get("security") == []:  # public in the document
        assert response.status_code != 401, response.text[:300]
        return
    assert response.status_code == 401, (response.status_code, response.text[:300])
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.headers["www-authenticate"][0].startswith("Bearer ")


def test_without_a_valid_token_every_fhir_route_is_401(secured_server):
    schema, root = _load(secured_server)
    document = schema.raw_schema
    assert document["security"] == [{"smart": []}]
    assert document["components"]["securitySchemes"]["smart"]["scheme"] == "bearer"
    failures = _fuzz(schema, root, _refused_without_a_valid_token)
    assert not failures, "\n\n".join(failures)


# ------------------------------------------------------------------ what the fuzzing found
def _bundle(kind, **entry):
    return {"resourceType": "Bundle", "type": kind, "entry": [entry]}


FOUND = [  # each was a 500 (a Python TypeError/AttributeError) before
    ("POST", "/fhir", _bundle("batch", request={"method": "GET", "url": 5})),
    ("POST", "/fhir", _bundle("transaction", request={"method": ["GET"], "url": "Patient"})),
    ("POST", "/fhir", _bundle("transaction", fullUrl=[1], request={"method": "GET", "url": "Patient"})),
    ("POST", "/fhir", _bundle("batch", request={"method": "POST", "url": "Patient", "ifNoneExist": 5},
                              resource={"resourceType": "Patient"})),
    ("POST", "/fhir", _bundle("transaction", request={"method": "PUT", "url": "Patient/x", "ifMatch": 5},
                              resource={"resourceType": "Patient", "id": "x"})),
    ("POST", "/fhir", _bundle("transaction", request={"method": "PUT", "url": "Patient?_id=x"}, resource=5)),
    ("POST", "/fhir", _bundle("transaction", request={"method": "PUT", "url": "Patient?_id=x"},
                              resource={"resourceType": "Patient", "id": 5})),
    ("POST", "/fhir", _bundle("batch", request={"method": "PATCH", "url": "Patient?_id=x"},
                              resource={"resourceType": "Binary", "data": 5})),
    ("POST", "/fhir", _bundle("transaction", request={"method": "POST", "url": "List"},
                              resource={"resourceType": "List", "code": [1]})),
    ("POST", "/fhir/Patient/$validate", {"resourceType": "Parameters", "parameter": 5}),
    ("POST", "/fhir/Patient/$validate", {"resourceType": "Parameters", "parameter": [5]}),
    ("POST", "/fhir/Patient/$validate", {"resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": 5}]}),
    ("PUT", "/fhir/Patient?_id=x", {"resourceType": "Patient", "id": 5}),
    ("POST", "/fhir/Patient", {"resourceType": "Patient", "meta": 5}),
    ("POST", "/fhir/Patient", {"resourceType": "Patient", "meta": {"profile": [5]}}),
]


@pytest.mark.parametrize(("method", "url", "body"), FOUND, ids=[f"{m} {u} {i}" for i, (m, u, _) in enumerate(FOUND)])
def test_malformed_input_found_by_fuzzing_is_a_4xx_outcome(client, method, url, body):
    response = client.client.open(url, method=method, data=json.dumps(body),
                                  headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})
    if response.status_code == 200 and response.json.get("type") == "batch-response":  # one outcome per entry
        outcomes = [entry["response"] for entry in response.json["entry"]]
        assert all(o["status"].startswith("4") and o["outcome"]["resourceType"] == "OperationOutcome" for o in outcomes)
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    assert response.json["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_conditional_criteria_of_result_parameters_only_are_refused(client, fixtures, method):
    """`DELETE /Patient?_format=json` named no criterion: it matched every Patient (and deleted the only one)."""
    assert client.post("/fhir/Patient", json=fixtures.make_patient()).status_code == 201
    body = json.dumps([{"op": "add", "path": "/active", "value": True}] if method == "PATCH" else fixtures.make_patient())
    content_type = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
    response = client.client.open("/fhir/Patient?_format=json&_count=1", method=method, data=body,
                                  headers={"Content-Type": content_type})
    assert response.status_code == 400, (response.status_code, response.data[:300])
    assert client.get("/fhir/Patient").json["total"] == 1
