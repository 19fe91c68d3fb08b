"""Writes under the DMP rules, and SMART scopes deciding every answer."""

from __future__ import annotations

import base64
import json

import pytest

from fhir_server.fhir.documents import TRE_A05
from tests.policy.conftest import document
from tests.search.conftest import TRE_A03


def new_doc(patient, author, rid=None):
    doc = document(rid or "x", patient, author, "11488-4")
    doc.pop("id")
    doc["content"][0]["attachment"].pop("url")
    return doc


def test_no_token_is_401_with_www_authenticate(dmp_app):
    response = dmp_app.test_client().get("/fhir/Patient")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_bad_token_is_401(dmp_app):
    response = dmp_app.test_client().get("/fhir/Patient", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401


def test_metadata_needs_no_token(dmp_app):
    assert dmp_app.test_client().get("/fhir/metadata").status_code == 200


def test_missing_scope_is_403(as_actor):
    client = as_actor("helene", "patient/Patient.rs")
    response = client.get("/fhir/DocumentReference")
    assert response.status_code == 403
    assert "does not grant" in response.json["issue"][0]["diagnostics"]
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 403


def test_read_only_scope_cannot_write(as_actor):
    client = as_actor("dr-martin", "user/*.rs")
    assert client.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-martin")).status_code == 403


def test_patient_scope_is_confined_to_the_patient_in_context_even_through_include(as_actor):
    client = as_actor("helene")
    patients = client.get("/fhir/Patient?_count=50").json
    assert {e["resource"]["id"] for e in patients["entry"]} == {"helene"}
    assert client.get("/fhir/Patient/zoe").status_code == 404
    bundle = client.get("/fhir/Consent?_include=Consent:patient").json
    assert all(e["resource"].get("patient", {}).get("reference", "Patient/helene") == "Patient/helene"
               for e in bundle["entry"] if e["resource"]["resourceType"] == "Consent")
    included = {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert included <= {"helene"}


def test_v2_scope_restriction_narrows_by_type(as_actor):
    client = as_actor("helene", "patient/DocumentReference.rs?type=http://loinc.org|68599-0")
    bundle = client.get("/fhir/DocumentReference").json
    assert {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] != "outcome"} == {"doc-psy"}
    assert client.get("/fhir/DocumentReference/doc-cr").status_code == 404


def test_scopes_only_narrow_the_policy(as_actor):
    # a system-level scope in a professional's token does not lift the DMP rules
    client = as_actor("dr-other", "system/*.cruds user/*.cruds")
    assert client.get("/fhir/DocumentReference/doc-cr").status_code == 404


def test_blocked_professional_cannot_add_a_document(as_actor):
    client = as_actor("dr-blocked")
    response = client.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-blocked"))
    assert response.status_code == 403
    assert "blocked" in response.json["issue"][0]["diagnostics"]


def test_treating_professional_without_authorisation_may_add(as_actor):
    client = as_actor("dr-other")
    response = client.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-other"))
    assert response.status_code == 201
    # ...but still cannot read the record
    assert client.get("/fhir/DocumentReference/doc-cr").status_code == 404


def test_no_new_document_in_a_closed_record(as_actor):
    response = as_actor("vendor", "system/*.cruds").post("/fhir/DocumentReference", json=new_doc("francois", "Practitioner/dr-author"))
    assert response.status_code == 403
    assert "closed" in response.json["issue"][0]["diagnostics"]


def test_patient_masks_but_cannot_edit_a_professional_document(as_actor):
    client = as_actor("helene")
    doc = client.get("/fhir/DocumentReference/doc-cr").json
    edited = {**doc, "description": "changed by the patient"}
    assert client.put("/fhir/DocumentReference/doc-cr", json=edited).status_code == 403
    masked = json.loads(json.dumps(doc))
    masked["securityLabel"].append({"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument", "code": "MASQUE_PS"}]})
    assert client.put("/fhir/DocumentReference/doc-cr", json=masked).status_code == 200
    # the authorised doctor, not the author of a masked document, no longer sees it
    # (restore afterwards so that other tests of the module keep their world)
    unmasked = client.get("/fhir/DocumentReference/doc-cr").json
    unmasked["securityLabel"] = doc["securityLabel"]
    assert client.put("/fhir/DocumentReference/doc-cr", json=unmasked).status_code == 200


def test_only_the_author_deletes(as_actor):
    author = as_actor("dr-martin")
    created = author.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-martin")).json
    other = as_actor("dr-urgence")
    assert other.delete(f"/fhir/DocumentReference/{created['id']}").status_code == 403
    assert author.delete(f"/fhir/DocumentReference/{created['id']}").status_code == 204


def test_professional_may_change_only_status_labels_and_archive_flag(as_actor):
    client = as_actor("dr-martin")
    created = client.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-martin")).json
    patch = [{"op": "add", "path": "/description", "value": "nouveau"}]
    assert client.patch(f"/fhir/DocumentReference/{created['id']}", patch).status_code == 405
    patch = [{"op": "replace", "path": "/status", "value": "superseded"}]
    assert client.patch(f"/fhir/DocumentReference/{created['id']}", patch).status_code == 200


def test_only_the_patient_manages_consents(as_actor):
    consent = as_actor("helene").get("/fhir/Consent/c-nurse").json
    assert as_actor("dr-martin").put("/fhir/Consent/c-nurse", json=consent).status_code in (403, 404)
    assert as_actor("helene").put("/fhir/Consent/c-nurse", json=consent).status_code == 200


def test_patient_reads_own_access_trail_professionals_do_not(as_actor):
    as_actor("dr-martin").get("/fhir/DocumentReference/doc-psy")  # the GP opens a document: traced
    events = [e["resource"] for e in as_actor("helene").get("/fhir/AuditEvent?_count=500").json["entry"]]
    assert "audit-helene" in {e["id"] for e in events}
    for event in events:  # only events about her record, and no security internals
        refs = {x.get("what", {}).get("reference") for x in event.get("entity", [])}
        refs |= {a.get("who", {}).get("reference") for a in event["agent"]}
        assert "Patient/helene" in refs and event["type"]["code"] == "rest"
    assert any(
        a.get("who", {}).get("reference") == "Practitioner/dr-martin"
        and any(x.get("what", {}).get("reference") == "DocumentReference/doc-psy" for x in e.get("entity", []))
        for e in events for a in e["agent"]
    )
    assert as_actor("dr-martin").get("/fhir/AuditEvent").json.get("entry", []) == []
    assert as_actor("dr-martin").get("/fhir/AuditEvent/audit-helene").status_code == 404


def test_audit_events_cannot_be_written_even_with_scopes(as_actor):
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z",
             "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}
    assert as_actor("vendor", "system/*.cruds").post("/fhir/AuditEvent", json=event).status_code == 405


def test_type_history_is_for_system_clients(as_actor):
    assert as_actor("dr-martin").get("/fhir/DocumentReference/_history").status_code == 403
    assert as_actor("vendor").get("/fhir/DocumentReference/_history").status_code == 200


def test_transaction_cannot_write_what_the_policy_refuses(as_actor, dmp_app):
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"x").decode()}
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:b", "resource": binary, "request": {"method": "POST", "url": "Binary"}},
            {"fullUrl": "urn:uuid:d", "resource": new_doc("helene", "Practitioner/dr-blocked"),
             "request": {"method": "POST", "url": "DocumentReference"}},
        ],
    }
    before = dmp_app.extensions["dmp"].repository.count({"rt": "Binary"})
    assert as_actor("dr-blocked").post("/fhir", json=bundle).status_code == 403
    assert dmp_app.extensions["dmp"].repository.count({"rt": "Binary"}) == before


@pytest.fixture()
def helene_masks_new_documents(as_actor):
    """Hélène asks that new documents be masked from professionals, for the test's duration."""
    from fhir_server.policy.access import DEFAULT_MASKING_RULE
    from tests.policy.conftest import consent

    preference = consent("c-default-mask", "helene", "deny", None, ("TREAT",), ("MASQUE_PS",))
    preference.pop("id")
    preference["policyRule"] = {"coding": [{"system": DEFAULT_MASKING_RULE[0], "code": DEFAULT_MASKING_RULE[1]}]}
    helene = as_actor("helene")
    created_pref = helene.post("/fhir/Consent", json=preference)
    assert created_pref.status_code == 201, created_pref.json
    yield helene
    assert helene.delete(f"/fhir/Consent/{created_pref.json['id']}").status_code == 204


def test_patient_default_masking_applies_to_new_documents(as_actor, helene_masks_new_documents):
    helene = helene_masks_new_documents
    doc = as_actor("dr-other").post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-other")).json
    codes = {c["code"] for label in doc["securityLabel"] for c in label["coding"]}
    assert codes == {"N", "MASQUE_PS"}
    assert as_actor("dr-authorised").get(f"/fhir/DocumentReference/{doc['id']}").status_code == 404
    assert as_actor("dr-martin").get(f"/fhir/DocumentReference/{doc['id']}").status_code == 200  # the GP
    assert helene.get(f"/fhir/DocumentReference/{doc['id']}").status_code == 200


def test_default_masking_covers_every_document_of_a_transaction(as_actor, helene_masks_new_documents):
    entries = [{"resource": new_doc("helene", "Practitioner/dr-other"),
                "request": {"method": "POST", "url": "DocumentReference"}} for _ in range(2)]
    response = as_actor("dr-other").post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.json
    for entry in response.json["entry"]:
        codes = {c["code"] for label in entry["resource"]["securityLabel"] for c in label["coding"]}
        assert "MASQUE_PS" in codes


def test_emergency_access_is_time_limited(dmp_app):
    import time

    from tests.policy.conftest import ActorClient, mint

    fresh = ActorClient(dmp_app.test_client(), mint(dmp_app, "dr-urgence"))
    assert fresh.get("/fhir/DocumentReference/doc-cr").status_code == 200
    stale = ActorClient(dmp_app.test_client(), mint(dmp_app, "dr-urgence", auth_time=int(time.time()) - 2 * 3600))
    assert stale.get("/fhir/DocumentReference/doc-cr").status_code == 404  # the emergency window has closed


def test_history_of_a_deleted_document_is_not_shown_to_professionals(as_actor):
    author = as_actor("dr-martin")
    created = author.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-martin")).json
    assert author.delete(f"/fhir/DocumentReference/{created['id']}").status_code == 204
    assert as_actor("dr-other").get(f"/fhir/DocumentReference/{created['id']}/_history").status_code == 404
    assert as_actor("dr-other").get(f"/fhir/DocumentReference/{created['id']}/_history/1").status_code == 404
    assert as_actor("vendor").get(f"/fhir/DocumentReference/{created['id']}/_history").status_code == 200


def remb(patient):
    doc = new_doc(patient, "Organization/cnam")
    doc["type"] = {"coding": [{"system": TRE_A05, "code": "REMB"}]}
    doc["category"] = [{"coding": [{"system": TRE_A03, "code": "60"}]}]
    return doc


def test_reimbursement_history_is_fed_by_a_system_client_only(as_actor):
    refused = as_actor("dr-martin").post("/fhir/DocumentReference", json=remb("helene"))
    assert refused.status_code == 403 and "REMB" in refused.json["issue"][0]["diagnostics"]
    assert as_actor("helene").post("/fhir/DocumentReference", json=remb("helene")).status_code == 403
    fed = as_actor("vendor", "system/*.cruds").post("/fhir/DocumentReference", json=remb("helene"))
    assert fed.status_code == 201, fed.json
    assert as_actor("vendor", "system/*.cruds").delete(f"/fhir/DocumentReference/{fed.json['id']}").status_code == 204


def test_a_system_client_too_changes_only_what_pdsm_lets_change(as_actor):
    vendor = as_actor("vendor", "system/*.cruds")
    created = vendor.post("/fhir/DocumentReference", json=new_doc("helene", "Practitioner/dr-martin")).json
    assert vendor.patch(f"/fhir/DocumentReference/{created['id']}", [{"op": "add", "path": "/description", "value": "x"}]).status_code == 405
    archive = [{"op": "add", "path": "/extension", "value": [
        {"url": "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived", "valueBoolean": True}]}]
    assert vendor.patch(f"/fhir/DocumentReference/{created['id']}", archive).status_code == 200


def test_a_patients_content_is_checked_against_its_bytes_on_every_path(as_actor):
    helene = as_actor("helene")
    disguised = base64.b64encode(b"MZ\x90\x00 an executable").decode()
    binary = {"resourceType": "Binary", "contentType": "application/pdf", "data": disguised}
    assert helene.post("/fhir/Binary", json=binary).status_code == 422
    doc = new_doc("helene", "Patient/helene")
    doc["type"] = {"coding": [{"system": TRE_A05, "code": "DOCPAT03"}]}
    doc["content"][0]["attachment"].update(url="urn:uuid:6a1b0d5e-0000-4000-8000-0000000000b1", contentType="application/pdf")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6a1b0d5e-0000-4000-8000-0000000000b1", "resource": binary, "request": {"method": "POST", "url": "Binary"}},
        {"fullUrl": "urn:uuid:6a1b0d5e-0000-4000-8000-0000000000d1", "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}}]}
    refused = helene.post("/fhir", json=bundle)
    assert refused.status_code == 422 and "PDF, JPEG, PNG, TIFF" in str(refused.json)
    binary["data"] = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    assert helene.post("/fhir", json=bundle).status_code == 200
