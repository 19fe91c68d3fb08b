"""Every failure is an OperationOutcome with the right status, and changes nothing stored."""

from __future__ import annotations

import pytest

from tests.conftest import make_patient


def assert_outcome(response, status):
    assert response.status_code == status, (response.status_code, response.data[:300])
    body = response.json
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["diagnostics"]
    return body


def test_malformed_json_is_400(client):
    response = client.post("/fhir/Patient", data=b'{"resourceType": "Patient",')
    assert_outcome(response, 400)


def test_wrong_resource_type_is_400(client):
    response = client.post("/fhir/Patient", json={"resourceType": "Practitioner"})
    assert_outcome(response, 400)


def test_invalid_content_is_422_with_expressions(client):
    patient = make_patient()
    patient["birthDate"] = "15/01/1980"
    patient["active"] = "perhaps"
    body = assert_outcome(client.post("/fhir/Patient", json=patient), 422)
    expressions = {e for issue in body["issue"] for e in issue.get("expression", [])}
    assert "Patient.birthDate" in expressions and "Patient.active" in expressions


def test_unknown_element_is_422(client):
    body = assert_outcome(client.post("/fhir/Patient", json={**make_patient(), "favouriteColour": "blue"}), 422)
    assert body["issue"][0]["expression"] == ["Patient.favouriteColour"]


@pytest.mark.parametrize(
    "value",
    ["280017505600199", "28001750560014", "2800175056001AB", "380017505600142"],
    ids=["wrong-key", "too-short", "letters", "bad-sex-digit"],
)
def test_dmp_patient_needs_an_ins_nir_with_a_valid_key(client, value):
    patient = make_patient()
    patient["identifier"][0]["value"] = value
    body = assert_outcome(client.post("/fhir/Patient", json=patient), 422)
    assert body["issue"][0]["expression"] == ["Patient.identifier[0]"]  # invariant dmp-pat-2 on each identifier


def test_corsican_nir_is_accepted(client):
    assert client.post("/fhir/Patient", json=make_patient(dept="2A")).status_code == 201
    assert client.post("/fhir/Patient", json=make_patient(dept="2B", rank="002")).status_code == 201


def test_dmp_patient_without_ins_is_422(client):
    patient = make_patient()
    patient["identifier"] = [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "123"}]
    assert_outcome(client.post("/fhir/Patient", json=patient), 422)


def test_unknown_type_is_404(client):
    assert_outcome(client.get("/fhir/Observation/1"), 404)
    assert_outcome(client.post("/fhir/Observation", json={"resourceType": "Observation"}), 404)


def test_gone_is_410(client):
    pid = client.post("/fhir/Patient", json=make_patient()).json["id"]
    client.delete(f"/fhir/Patient/{pid}")
    assert_outcome(client.get(f"/fhir/Patient/{pid}"), 410)


def test_unsupported_media_type_is_415(client):
    response = client.post("/fhir/Patient", data=b"<Patient/>", content_type="application/fhir+xml")
    assert_outcome(response, 415)


def test_xml_only_accept_is_406(client):
    pid = client.post("/fhir/Patient", json=make_patient()).json["id"]
    assert_outcome(client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"}), 406)
    assert_outcome(client.get(f"/fhir/Patient/{pid}?_format=xml"), 406)
    assert client.get(f"/fhir/Patient/{pid}?_format=json").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/json"}).status_code == 200


def test_too_large_body_is_413(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/fhir/Patient", data=b" " * (limit + 1))
    assert_outcome(response, 413)


def test_audit_events_cannot_be_written_by_clients(client):
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z"}
    assert_outcome(client.post("/fhir/AuditEvent", json=event), 405)


def test_invalid_id_in_url_is_400(client):
    assert_outcome(client.put("/fhir/Patient/bad_id!", json={**make_patient(), "id": "bad_id!"}), 400)


def test_unknown_route_is_an_operation_outcome(client):
    assert_outcome(client.get("/fhir/Patient/1/2/3/4/5"), 404)


def test_failed_update_leaves_the_stored_version_untouched(client):
    patient = client.post("/fhir/Patient", json=make_patient()).json
    broken = {**patient, "birthDate": "yesterday"}
    assert_outcome(client.put(f"/fhir/Patient/{patient['id']}", json=broken), 422)
    current = client.get(f"/fhir/Patient/{patient['id']}").json
    assert current["meta"]["versionId"] == "1" and current["birthDate"] == patient["birthDate"]


def test_validate_lists_every_problem_with_its_expression(client):
    patient = make_patient()
    patient["identifier"][0]["value"] = "280017505600199"
    patient["birthDate"] = "15/01/1980"
    response = client.post("/fhir/Patient/$validate", json=patient)
    assert response.status_code == 200
    expressions = {e for issue in response.json["issue"] for e in issue.get("expression", [])}
    assert {"Patient.birthDate", "Patient.identifier[0]"} <= expressions
    ok = client.post("/fhir/Patient/$validate", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": make_patient()}, {"name": "mode", "valueCode": "create"}]})
    assert ok.json["issue"][0]["severity"] == "information"
    assert client.post("/fhir/Patient/$validate", json={"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "explode"}]}).status_code == 400


def test_validate_against_a_named_profile_lists_its_rules(client):
    from fhir_server.fhir.provide_bundle import LAB_REPORT, Doc, document_reference

    doc = document_reference(Doc(**LAB_REPORT), "Patient/p1", "Practitioner/a1", "Binary/b1")
    del doc["masterIdentifier"], doc["context"]["period"]
    plain = client.post("/fhir/DocumentReference/$validate", json=doc).json
    assert plain["issue"][0]["severity"] == "information"  # the base DMP profile asks less
    comprehensive = "https://dmp-fhir.github.io/ig/StructureDefinition/dmp-documentreference-comprehensive"
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": doc}, {"name": "profile", "valueUri": comprehensive}]}
    expressions = {e for i in client.post("/fhir/DocumentReference/$validate", json=body).json["issue"] for e in i["expression"]}
    assert expressions == {"DocumentReference.masterIdentifier", "DocumentReference.context.period"}
    unknown = client.post("/fhir/DocumentReference/$validate?profile=http://example.org/nope", json=doc)
    assert unknown.status_code == 400
