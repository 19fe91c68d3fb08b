"""DMP document rules: ITI-105 inline publish, resubmission, replacement, patient uploads."""

from __future__ import annotations

import base64

from tests.conftest import make_document, make_patient

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"


def patient_id(client):
    return client.post("/fhir/Patient", json=make_patient()).json["id"]


def inline_doc(pid, data=PDF, content_type="application/pdf", master="urn:oid:1.2.250.1.999.1", type_code=None):
    doc = make_document(f"Patient/{pid}")
    doc["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": master}
    doc["content"] = [{"attachment": {"contentType": content_type, "data": base64.b64encode(data).decode()}}]
    if type_code:
        doc["type"] = {"coding": [{"system": TRE_A05, "code": type_code}]}
        doc["author"] = [{"reference": f"Patient/{pid}"}]
    return doc


def test_simplified_publish_stores_the_content_as_a_binary(client):
    pid = patient_id(client)
    created = client.post("/fhir/DocumentReference", json=inline_doc(pid))
    assert created.status_code == 201, created.json
    attachment = created.json["content"][0]["attachment"]
    assert "data" not in attachment and attachment["url"].startswith("Binary/") and attachment["size"] == len(PDF)
    raw = client.client.get(f"/fhir/{attachment['url']}", headers={"Accept": "application/pdf"})
    assert raw.data == PDF


def test_resubmission_of_the_same_document_is_refused(client, services):
    pid = patient_id(client)
    assert client.post("/fhir/DocumentReference", json=inline_doc(pid)).status_code == 201
    again = client.post("/fhir/DocumentReference", json=inline_doc(pid))
    assert again.status_code == 409 and "resubmission" in again.json["issue"][0]["diagnostics"]
    assert services.repository.count({"rt": "DocumentReference", "state": "live"}) == 1
    assert services.repository.count({"rt": "Binary", "state": "live"}) == 1  # nothing half-stored


def test_replacement_supersedes_the_old_document_atomically(client):
    pid = patient_id(client)
    old = client.post("/fhir/DocumentReference", json=inline_doc(pid)).json
    new = inline_doc(pid, master="urn:oid:1.2.250.1.999.2")
    new["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    created = client.post("/fhir/DocumentReference", json=new)
    assert created.status_code == 201
    assert client.get(f"/fhir/DocumentReference/{old['id']}").json["status"] == "superseded"
    again = client.post("/fhir/DocumentReference", json={**new, "masterIdentifier": {"value": "urn:oid:1.2.250.1.999.3"}})
    assert again.status_code == 422 and "only a current document" in again.json["issue"][0]["diagnostics"]


def test_replacing_another_patients_document_is_refused(client):
    pid = patient_id(client)
    other = client.post("/fhir/Patient", json=make_patient(rank="002")).json["id"]
    old = client.post("/fhir/DocumentReference", json=inline_doc(other)).json
    new = inline_doc(pid, master="urn:oid:1.2.250.1.999.9")
    new["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    response = client.post("/fhir/DocumentReference", json=new)
    assert response.status_code == 422 and "another patient" in response.json["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/DocumentReference/{old['id']}").json["status"] == "current"


def test_replacement_inside_a_transaction(client):
    pid = patient_id(client)
    old = client.post("/fhir/DocumentReference", json=inline_doc(pid)).json
    new = make_document(f"Patient/{pid}")
    new["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"fullUrl": "urn:uuid:n", "resource": new, "request": {"method": "POST", "url": "DocumentReference"}}]}
    assert client.post("/fhir", json=bundle).status_code == 200
    assert client.get(f"/fhir/DocumentReference/{old['id']}").json["status"] == "superseded"


def test_patient_uploads_are_checked_against_their_bytes(client):
    pid = patient_id(client)
    ok = client.post("/fhir/DocumentReference", json=inline_doc(pid, type_code="DOCPAT01"))
    assert ok.status_code == 201
    disguised = inline_doc(pid, data=b"MZ\x90\x00 not a pdf", master="urn:oid:1.2.250.1.999.4", type_code="DOCPAT01")
    response = client.post("/fhir/DocumentReference", json=disguised)
    assert response.status_code == 422 and "PDF, JPEG, PNG, TIFF" in response.json["issue"][0]["diagnostics"]
    text = inline_doc(pid, data="Mes allergies : pénicilline".encode(), content_type="text/plain",
                      master="urn:oid:1.2.250.1.999.5", type_code="DOCPAT02")
    assert client.post("/fhir/DocumentReference", json=text).status_code == 201
    png_as_pdf = inline_doc(pid, data=b"\x89PNG\r\n\x1a\n....", master="urn:oid:1.2.250.1.999.6", type_code="DOCPAT04")
    assert client.post("/fhir/DocumentReference", json=png_as_pdf).status_code == 422


def test_a_patient_upload_is_produced_by_exp_patient(client):
    from fhir_server.fhir.documents import TRE_A00

    pid = patient_id(client)
    created = client.post("/fhir/DocumentReference", json=inline_doc(pid, type_code="DOCPAT05")).json
    context = created["context"]
    assert context["facilityType"]["coding"][0]["code"] == context["practiceSetting"]["coding"][0]["code"] == "EXP_PATIENT"
    other = inline_doc(pid, master="urn:oid:1.2.250.1.999.8", type_code="DOCPAT05")
    other["context"]["facilityType"] = {"coding": [{"system": TRE_A00, "code": "ALIM_AM"}]}
    refused = client.post("/fhir/DocumentReference", json=other)
    assert refused.status_code == 422 and refused.json["issue"][0]["expression"] == ["DocumentReference.context.facilityType"]
