"""Walk the served CapabilityStatement and prove each thing it declares works, and that what it
does not declare is refused: interactions of every type, includes, operations, search parameters."""

from __future__ import annotations

import copy

import pytest

from fhir_server.interactions.conformance import CONFORMANCE_TYPES
from tests.search.conftest import dataset
from tests.search.test_declared_parameters import declared

ALL_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type")


@pytest.fixture(scope="module")
def statement(search):
    return search.get("/fhir/metadata").json["rest"][0]


# Types the search dataset stores through the server's own writers only.
EXTRA_SAMPLES = {
    "Binary": {"resourceType": "Binary", "contentType": "text/plain", "data": "Q29tcHRlIHJlbmR1"},
    "Subscription": {"resourceType": "Subscription", "status": "requested", "reason": "Nouveaux documents",
                     "criteria": "DocumentReference?patient=Patient/pat-helene",
                     "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/dmp"}},
}


def samples() -> dict[str, dict]:
    out = dict(EXTRA_SAMPLES)
    for resource in dataset():
        out.setdefault(resource["resourceType"], resource)
    return out


def test_every_declared_search_parameter_is_proven_and_none_is_missing(statement):
    in_statement = {(r["type"], p["name"]) for r in statement["resource"] if r["type"] not in CONFORMANCE_TYPES
                    for p in r.get("searchParam", [])}
    assert in_statement == set(declared())  # test_declared_parameters runs a matching and a non-matching value of each


def test_every_include_and_revinclude_answers_and_includes_only_what_matches_reference(search, statement):
    for resource in statement["resource"]:
        rt = resource["type"]
        if rt in CONFORMANCE_TYPES:
            continue
        base = f"/fhir/{rt}?_count=100" + ("&patient=Patient/pat-helene&status=current,superseded" if rt == "DocumentReference" else "")
        for include in resource.get("searchInclude", []):
            bundle = search.get(f"{base}&_include={include}")
            assert bundle.status_code == 200, (rt, include, bundle.json)
            entries = bundle.json.get("entry", [])
            matched = [e["resource"] for e in entries if e["search"]["mode"] == "match"]
            for included in (e["resource"] for e in entries if e["search"]["mode"] == "include"):
                ref = f"{included['resourceType']}/{included['id']}"
                assert any(ref in str(m) for m in matched), (rt, include, ref)
        for revinclude in resource.get("searchRevInclude", []):
            bundle = search.get(f"{base}&_revinclude={revinclude}")
            assert bundle.status_code == 200, (rt, revinclude, bundle.json)


def test_includes_bring_the_referenced_resources(search):
    bundle = search.get("/fhir/DocumentReference?patient=Patient/pat-helene&status=current&_include=DocumentReference:author").json
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included  # the dataset's documents have practitioner authors


def test_every_declared_interaction_works_and_undeclared_ones_are_refused(client, statement):
    examples = samples()
    for resource in statement["resource"]:
        rt = resource["type"]
        declared_codes = {i["code"] for i in resource["interaction"]}
        if rt in CONFORMANCE_TYPES:
            continue  # read and search-type: tests/interactions/test_conformance_resources.py
        sample = copy.deepcopy(examples.get(rt))
        assert sample is not None or "create" not in declared_codes, f"no sample for {rt}"
        _walk(client, rt, declared_codes, sample)


def _walk(client, rt: str, codes: set[str], sample: dict | None) -> None:
    if "create" in codes:
        sample.pop("id", None)
        created = client.post(f"/fhir/{rt}", json=sample)
        assert created.status_code == 201, (rt, created.json)
        rid = created.json["id"]
    else:
        assert client.post(f"/fhir/{rt}", json={"resourceType": rt}).status_code in (404, 405), rt
        found = client.get(f"/fhir/{rt}?_count=1").json.get("entry", [])
        rid = found[0]["resource"]["id"] if found else None
    if rid is None:
        return
    checks = {
        "read": lambda: client.get(f"/fhir/{rt}/{rid}"),
        "vread": lambda: client.get(f"/fhir/{rt}/{rid}/_history/1"),
        "history-instance": lambda: client.get(f"/fhir/{rt}/{rid}/_history"),
        "history-type": lambda: client.get(f"/fhir/{rt}/_history"),
        "search-type": lambda: client.get(f"/fhir/{rt}?_id={rid}"),
        "update": lambda: client.put(f"/fhir/{rt}/{rid}", json=client.get(f"/fhir/{rt}/{rid}").json),
        "patch": lambda: client.patch(f"/fhir/{rt}/{rid}", [{"op": "add", "path": "/meta/tag",
                                                             "value": [{"system": "urn:test", "code": "walk"}]}]),
        "delete": lambda: client.delete(f"/fhir/{rt}/{rid}"),
    }
    for code in ALL_INTERACTIONS:
        if code == "create":
            continue
        response = checks[code]()
        if code in codes:
            assert response.status_code in (200, 204), (rt, code, response.json)
        else:
            assert response.status_code in (403, 404, 405), (rt, code, response.status_code)


def test_every_declared_operation_works(client, statement):
    examples = samples()
    names = {op["name"] for op in statement["operation"]}
    assert names == {"everything", "validate"}
    patient = client.post("/fhir/Patient", json={**examples["Patient"], "id": None} | {}).json
    everything = client.get(f"/fhir/Patient/{patient['id']}/$everything")
    assert everything.status_code == 200 and everything.json["type"] == "searchset"
    for resource in statement["resource"]:
        if resource["type"] in CONFORMANCE_TYPES or resource["type"] not in examples:
            continue
        body = {k: v for k, v in examples[resource["type"]].items() if k != "id"}
        outcome = client.post(f"/fhir/{resource['type']}/$validate", json=body)
        assert outcome.status_code == 200 and outcome.json["resourceType"] == "OperationOutcome", resource["type"]


def test_declared_conditional_read_answers_304(client, statement):
    patient = next(r for r in statement["resource"] if r["type"] == "Patient")
    assert patient["conditionalRead"] == "full-support"
    created = client.post("/fhir/Patient", json={k: v for k, v in samples()["Patient"].items() if k != "id"})
    url = f"/fhir/Patient/{created.json['id']}"
    assert client.get(url, headers={"If-None-Match": created.headers["ETag"]}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": "Tue, 01 Jan 2036 00:00:00 GMT"}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"99"'}).status_code == 200
