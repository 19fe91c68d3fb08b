"""The profiles, value sets, concept maps and operation definitions the CapabilityStatement names are served."""

from __future__ import annotations

import pytest

from fhir_server.fhir.profiles import CONFORMANCE_FOLDERS, conformance_resources


def canonical_read(client, kind, url):
    bundle = client.get(f"/fhir/{kind}?url={url}").json
    assert bundle["total"] == 1, url
    resource = bundle["entry"][0]["resource"]
    assert client.get(f"/fhir/{kind}/{resource['id']}").json == resource
    return resource


def test_every_profile_and_operation_of_the_capability_statement_resolves(client):
    cs = client.get("/fhir/metadata").json
    rest = cs["rest"][0]
    for entry in rest["resource"]:
        for url in entry.get("supportedProfile", []) + ([entry["profile"]] if "profile" in entry else []):
            assert canonical_read(client, "StructureDefinition", url)["type"] == entry["type"]
    for operation in rest["operation"]:
        assert canonical_read(client, "OperationDefinition", operation["definition"])["code"] == operation["name"]


@pytest.mark.parametrize("kind", list(CONFORMANCE_FOLDERS))
def test_each_shipped_resource_is_read_by_id_and_unknown_ones_are_404(client, kind):
    for rid, resource in conformance_resources(kind).items():
        assert client.get(f"/fhir/{kind}/{rid}").json == resource
    missing = client.get(f"/fhir/{kind}/no-such-thing")
    assert missing.status_code == 404 and missing.json["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/{kind}?name=x").status_code == 400
    assert client.get(f"/fhir/{kind}?url=http://example.org/none").json["total"] == 0


def test_reading_the_servers_description_is_not_an_audited_access(client, services):
    events = services.repository.db["audit_events"]
    before = events.count_documents({})
    client.get("/fhir/StructureDefinition/dmp-patient")
    client.get("/fhir/ValueSet?url=http://hl7.org/fhir/ValueSet/administrative-gender")
    client.get("/fhir/metadata")
    assert events.count_documents({}) == before
    client.get("/fhir/Patient/nobody")
    assert events.count_documents({}) == before + 1  # a read of the record still is
