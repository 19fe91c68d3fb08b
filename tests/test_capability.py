"""The CapabilityStatement is generated from the routing registries and the committed file matches it."""

from __future__ import annotations

import json
from pathlib import Path

from fhir_server.fhir.resource_types import RESOURCE_TYPES
from fhir_server.interactions.conformance import CONFORMANCE_TYPES

ROOT = Path(__file__).resolve().parent.parent


def _normalise(statement: dict, origin: str) -> dict:
    text = json.dumps(statement, sort_keys=True).replace(origin, "{origin}")
    out = json.loads(text)
    out.pop("date", None)
    return out


def test_metadata_is_an_r4_instance_capability_statement(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["kind"] == "instance" and statement["fhirVersion"] == "4.0.1"
    assert statement["implementation"]["url"] == "http://localhost/fhir"
    rest = statement["rest"][0]
    assert {r["type"] for r in rest["resource"]} == set(RESOURCE_TYPES) | set(CONFORMANCE_TYPES)
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch", "history-system", "search-system"}


def test_interactions_listed_are_exactly_the_registry(client):
    rest = client.get("/fhir/metadata").json["rest"][0]
    for resource in rest["resource"]:
        listed = {i["code"] for i in resource["interaction"]}
        if resource["type"] in CONFORMANCE_TYPES:  # shipped files: read and search only
            assert listed == {"read", "search-type"}
            continue
        assert listed == set(RESOURCE_TYPES[resource["type"]].interactions), resource["type"]
    audit = next(r for r in rest["resource"] if r["type"] == "AuditEvent")
    assert not {"create", "update", "delete", "patch"} & {i["code"] for i in audit["interaction"]}


def test_committed_capability_statement_matches_the_served_one(client):
    served = client.get("/fhir/metadata").json
    committed = json.loads((ROOT / "capability_statement.json").read_text(encoding="utf-8"))
    assert _normalise(committed, "http://localhost:8080") == _normalise(served, "http://localhost"), (
        "capability_statement.json is stale: run scripts/generate_capability_statement.py"
    )
