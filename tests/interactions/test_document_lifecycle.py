"""After creation (PDSm): archiving, ITI-67 search rules, advance directives, logical delete."""

from __future__ import annotations

import base64

from fhir_server.fhir.documents import TRE_A05
from tests.conftest import make_patient, make_practitioner
from fhir_server.fhir.provide_bundle import LAB_REPORT, PATIENT_SUMMARY, Doc, provide_bundle

ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"


def publish(client, *docs):
    patient = client.post("/fhir/Patient", json=make_patient()).json["id"]
    author = client.post("/fhir/Practitioner", json=make_practitioner()).json["id"]
    response = client.post("/fhir", json=provide_bundle(f"Patient/{patient}", f"Practitioner/{author}", *docs))
    assert response.status_code == 200, response.json
    ids = [e["response"]["location"].split("/")[1] for e in response.json["entry"]
           if e["response"]["location"].startswith("DocumentReference/")]
    return patient, ids


def matches(bundle):
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_archiving_by_business_identifier_keeps_the_document_current_but_out_of_default_searches(client):
    lab, summary = Doc(**LAB_REPORT), Doc(**PATIENT_SUMMARY)
    patient, (lab_id, summary_id) = publish(client, lab, summary)
    patch = [{"op": "add", "path": "/extension", "value": [{"url": ARCHIVED, "valueBoolean": True}]}]
    response = client.client.patch(
        "/fhir/DocumentReference", query_string={"identifier": f"urn:ietf:rfc:3986|{lab.master}"},
        data=__import__("json").dumps(patch), headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["meta"]["versionId"] == "2" and response.get_json()["status"] == "current"
    default = client.get(f"/fhir/DocumentReference?patient=Patient/{patient}&status=current").json
    assert matches(default) == [summary_id]
    archived = client.get(f"/fhir/DocumentReference?patient=Patient/{patient}&status=current&isArchived=true").json
    assert matches(archived) == [lab_id]
    assert client.get(f"/fhir/DocumentReference/{lab_id}").status_code == 200
    # unarchiving finds the archived document by its business identifier too (TD3.3d)
    unarchive = [{"op": "replace", "path": "/extension/0/valueBoolean", "value": False}]
    response = client.client.patch(
        "/fhir/DocumentReference", query_string={"identifier": f"urn:ietf:rfc:3986|{lab.master}"},
        data=__import__("json").dumps(unarchive), headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.get_json()
    default = client.get(f"/fhir/DocumentReference?patient=Patient/{patient}&status=current").json
    assert sorted(matches(default)) == sorted([lab_id, summary_id])


def test_find_document_references_names_the_patient_and_the_status(client):
    patient, ids = publish(client, Doc(**LAB_REPORT))
    strict = client.get("/fhir/DocumentReference?type=http://loinc.org|11502-2", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and "ITI-67" in strict.json["issue"][0]["diagnostics"]
    lenient = client.get("/fhir/DocumentReference?type=http://loinc.org|11502-2").json
    assert matches(lenient) == ids
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"][0]["resource"]
    assert outcome["issue"][0]["severity"] == "warning" and "patient" in outcome["issue"][0]["diagnostics"]
    by_identifier = client.get(f"/fhir/DocumentReference?patient.identifier={make_patient()['identifier'][0]['system']}|"
                               f"{make_patient()['identifier'][0]['value']}&status=current",
                               headers={"Prefer": "handling=strict"})
    assert by_identifier.status_code == 200 and matches(by_identifier.json) == ids


def directives(patient, master):
    text = "Directives anticipées : je refuse l'acharnement thérapeutique.".encode()
    return {
        "resourceType": "DocumentReference", "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": master},
        "type": {"coding": [{"system": TRE_A05, "code": "EXPPAT_3"}]},
        "subject": {"reference": f"Patient/{patient}"}, "author": [{"reference": f"Patient/{patient}"}],
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text).decode()}}],
    }


def test_a_new_version_of_the_advance_directives_supersedes_the_previous_one(client):
    patient = client.post("/fhir/Patient", json=make_patient()).json["id"]
    first = client.post("/fhir/DocumentReference", json=directives(patient, "urn:uuid:6f1c1a52-0000-4000-8000-000000000001"))
    assert first.status_code == 201, first.json
    second = client.post("/fhir/DocumentReference", json=directives(patient, "urn:uuid:6f1c1a52-0000-4000-8000-000000000002"))
    assert second.status_code == 201
    assert client.get(f"/fhir/DocumentReference/{first.json['id']}").json["status"] == "superseded"
    current = client.get(f"/fhir/DocumentReference?patient=Patient/{patient}&status=current&type={TRE_A05}|EXPPAT_3").json
    assert matches(current) == [second.json["id"]]


def test_logical_delete_keeps_the_history_and_hides_the_document_and_its_content(client):
    patient, (doc_id,) = publish(client, Doc(**LAB_REPORT))
    binary = client.get(f"/fhir/DocumentReference/{doc_id}").json["content"][0]["attachment"]["url"]
    assert client.delete(f"/fhir/DocumentReference/{doc_id}").status_code == 204
    assert client.get(f"/fhir/DocumentReference/{doc_id}").status_code == 410
    for status in ("current", "superseded"):
        assert matches(client.get(f"/fhir/DocumentReference?patient=Patient/{patient}&status={status}").json) == []
    history = client.get(f"/fhir/DocumentReference/{doc_id}/_history").json
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert history["entry"][1]["resource"]["status"] == "current"  # every stored version stays MHD-valid
    assert client.get(f"/fhir/{binary}").status_code == 200  # the operator (open mode) still reaches the bytes
