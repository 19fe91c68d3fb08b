"""ITI-65 Provide Document Bundle under the ANS PDSm Comprehensive rules: all or nothing."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from tests.conftest import make_patient, make_practitioner
from fhir_server.fhir.provide_bundle import (
    CONFIDENTIALITY, DISCHARGE_LETTER, IMAGING_REPORT, LAB_REPORT, PATIENT_SUMMARY, TRE_A03, Doc, entry_of,
    provide_bundle,
)


@pytest.fixture()
def record(client):
    patient = client.post("/fhir/Patient", json=make_patient()).json["id"]
    author = client.post("/fhir/Practitioner", json=make_practitioner()).json["id"]
    return f"Patient/{patient}", f"Practitioner/{author}"


def stored(services) -> int:
    return services.repository.count({"state": "live"})


def test_a_discharge_letter_lab_imaging_and_summary_are_stored_found_and_retrieved(client, record):
    patient, author = record
    docs = [Doc(**DISCHARGE_LETTER), Doc(**LAB_REPORT), Doc(**IMAGING_REPORT), Doc(**PATIENT_SUMMARY)]
    response = client.post("/fhir", json=provide_bundle(patient, author, *docs))
    assert response.status_code == 200, response.json
    assert [e["response"]["status"] for e in response.json["entry"]] == ["201 Created"] * 9
    found = client.get(f"/fhir/DocumentReference?patient={patient}&status=current").json
    assert found["total"] == 4
    by_title = {e["resource"]["description"]: e["resource"] for e in found["entry"]}
    for doc in docs:
        attachment = by_title[doc.title]["content"][0]["attachment"]
        assert attachment["url"].startswith("Binary/") and patient.split("/")[1] not in attachment["url"]
        raw = client.client.get(f"/fhir/{attachment['url']}", headers={"Accept": "application/pdf"})
        assert raw.status_code == 200 and raw.data == doc.bytes() and raw.mimetype == "application/pdf"
    summary = client.get(f"/fhir/DocumentReference?patient={patient}&status=current&type=http://loinc.org|60591-5").json
    assert [e["resource"]["description"] for e in summary["entry"]] == [PATIENT_SUMMARY["title"]]
    imaging = client.get(f"/fhir/DocumentReference?patient={patient}&status=current&category={TRE_A03}|31").json
    assert imaging["total"] == 1
    lists = client.get(f"/fhir/List?patient={patient}&code=https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset").json
    assert lists["total"] == 1 and len(lists["entry"][0]["resource"]["entry"]) == 4


def test_a_replacement_supersedes_the_previous_version_in_the_same_bundle(client, record):
    patient, author = record
    first = client.post("/fhir", json=provide_bundle(patient, author, Doc(**LAB_REPORT))).json
    old_id = first["entry"][1]["response"]["location"].split("/")[1]
    corrected = Doc(**{**LAB_REPORT, "title": "Compte rendu d'examens biologiques (corrigé)"}, replaces=f"DocumentReference/{old_id}")
    assert client.post("/fhir", json=provide_bundle(patient, author, corrected)).status_code == 200
    assert client.get(f"/fhir/DocumentReference/{old_id}").json["status"] == "superseded"
    current = client.get(f"/fhir/DocumentReference?patient={patient}&status=current").json
    assert [e["resource"]["description"] for e in current["entry"]] == [corrected.title]


def _break(bundle: dict, path: str, value=None, delete=False) -> None:
    """Change one element of the first DocumentReference (or of the entry named by the path's head)."""
    head, _, rest = path.partition(":")
    target = entry_of(bundle, head)["resource"] if rest else entry_of(bundle, "DocumentReference")["resource"]
    keys = (rest or head).split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    if delete:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value


def _coding(system, code):
    return {"coding": [{"system": system, "code": code}]}


# (rule, change, the element the OperationOutcome must name)
FAILING = [
    ("masterIdentifier required", ("masterIdentifier", None, True), "masterIdentifier"),
    ("type from J66", ("type", _coding("http://loinc.org", "12345-6")), "type"),
    ("class from J57", ("category", [_coding(TRE_A03, "99")]), "category"),
    ("type-class correspondence", ("category", [_coding(TRE_A03, "31")]), "category[0]"),
    ("confidentiality from J58", ("securityLabel", [_coding(CONFIDENTIALITY, "L")]), "securityLabel"),
    ("format from J60", ("content.0.format", {"system": "urn:oid:1.2.3", "code": "text"}), "content[0].format"),
    ("facility from J61", ("context.facilityType", _coding("urn:oid:1.2.3", "HOPITAL")), "context.facilityType"),
    ("practice setting from J62", ("context.practiceSetting", _coding("urn:oid:1.2.3", "X")), "context.practiceSetting"),
    ("service start required", ("context.period.start", None, True), "context.period.start"),
    ("size of the bytes", ("content.0.attachment.size", 12), "content[0].attachment.size"),
    ("SHA-1 of the bytes", ("content.0.attachment.hash", base64.b64encode(b"0" * 20).decode()), "content[0].attachment.hash"),
    ("hash required", ("content.0.attachment.hash", None, True), "content[0].attachment.hash"),
    ("attachment language required", ("content.0.attachment.language", None, True), "content[0].attachment.language"),
    ("author required", ("author", None, True), "author"),
    ("status current or superseded", ("status", "entered-in-error"), "status"),
    ("content travels with the document", ("content.0.attachment.url", "urn:uuid:4b0c6d2e-0000-4000-8000-000000000000"), "content[0].attachment.url"),
    ("subject is the submission set's patient", ("subject", {"reference": "Patient/someone-else"}), "subject"),
    ("submission set date", ("List:date", None, True), "date"),
    ("submission set mode", ("List:mode", "snapshot"), "mode"),
]


@pytest.mark.parametrize("rule,change,element", FAILING, ids=[f[0] for f in FAILING])
def test_every_pdsm_rule_refuses_the_whole_bundle(client, services, record, rule, change, element):
    patient, author = record
    bundle = provide_bundle(patient, author, Doc(**DISCHARGE_LETTER), Doc(**LAB_REPORT))
    _break(bundle, change[0], change[1], delete=len(change) > 2)
    before = stored(services)
    response = client.post("/fhir", json=bundle)
    assert response.status_code in (400, 422), (rule, response.json)
    assert response.json["resourceType"] == "OperationOutcome"
    expressions = [x for issue in response.json["issue"] for x in issue.get("expression", [])]
    if element:
        assert any(x.startswith("Bundle.entry[") and x.endswith((element, element + "[0]")) for x in expressions), (rule, response.json)
    assert stored(services) == before  # all or nothing


def test_a_document_missing_from_the_submission_set_is_refused(client, services, record):
    patient, author = record
    bundle = provide_bundle(patient, author, Doc(**DISCHARGE_LETTER), Doc(**LAB_REPORT))
    entry_of(bundle, "List")["resource"]["entry"].pop()
    before = stored(services)
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 422
    assert any("not an entry of the SubmissionSet" in i["diagnostics"] for i in response.json["issue"])
    assert stored(services) == before


def test_the_same_document_twice_in_a_bundle_or_again_later_is_refused(client, services, record):
    patient, author = record
    letter = Doc(**DISCHARGE_LETTER)
    twice = provide_bundle(patient, author, letter, copy.copy(letter))
    response = client.post("/fhir", json=twice)
    assert response.status_code == 422 and "a document is sent once" in str(response.json)
    assert client.post("/fhir", json=provide_bundle(patient, author, letter)).status_code == 200
    before = stored(services)
    again = client.post("/fhir", json=provide_bundle(patient, author, letter))
    assert again.status_code == 409 and "resubmission" in again.json["issue"][0]["diagnostics"]
    assert stored(services) == before


def test_a_bundle_with_two_submission_sets_or_foreign_resources_is_refused(client, services, record):
    patient, author = record
    bundle = provide_bundle(patient, author, Doc(**LAB_REPORT))
    bundle["entry"].append(copy.deepcopy(entry_of(bundle, "List")) | {"fullUrl": "urn:uuid:0d1e2f3a-0000-4000-8000-000000000001"})
    bundle["entry"].append({"fullUrl": "urn:uuid:0d1e2f3a-0000-4000-8000-000000000002", "resource": make_patient(rank="003"),
                            "request": {"method": "POST", "url": "Patient"}})
    before = stored(services)
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 422
    text = str(response.json)
    assert "exactly one SubmissionSet" in text
    assert stored(services) == before


def test_a_replacement_in_the_mhd_patch_entry_form_and_a_second_replacement_of_the_same_version(client, services, record):
    patient, author = record
    first = client.post("/fhir", json=provide_bundle(patient, author, Doc(**IMAGING_REPORT))).json
    old_id = first["entry"][1]["response"]["location"].split("/")[1]
    bundle = provide_bundle(patient, author, Doc(**{**IMAGING_REPORT, "title": "CR d'imagerie (v2)"}, replaces=f"DocumentReference/{old_id}"))
    patch = [{"op": "replace", "path": "/status", "value": "superseded"}]
    bundle["entry"].append({"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                         "data": base64.b64encode(json.dumps(patch).encode()).decode()},
                            "request": {"method": "PATCH", "url": f"DocumentReference/{old_id}"}})
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.json
    assert client.get(f"/fhir/DocumentReference/{old_id}").json["status"] == "superseded"
    before = stored(services)
    again = provide_bundle(patient, author, Doc(**{**IMAGING_REPORT, "title": "v3"}, replaces=f"DocumentReference/{old_id}"))
    refused = client.post("/fhir", json=again)
    assert refused.status_code == 422 and "only a current document can be replaced" in str(refused.json)
    assert stored(services) == before


@pytest.mark.parametrize("path,value", [
    ("List:entry", [1, {"item": "x"}]), ("List:subject", "Patient/1"), ("subject", ["Patient/1"]),
    ("masterIdentifier", {"value": ["a"]}), ("content", [{"attachment": {"url": {"a": 1}}}]),
    ("content", "not a list"), ("Binary:data", 12),
])
def test_wrong_shapes_inside_an_iti65_bundle_are_client_errors(client, services, record, path, value):
    patient, author = record
    bundle = provide_bundle(patient, author, Doc(**LAB_REPORT))
    if path == "Binary:data":
        entry_of(bundle, "Binary")["resource"]["data"] = value
    else:
        _break(bundle, path, value)
    before = stored(services)
    response = client.post("/fhir", json=bundle)
    assert response.status_code in (400, 422), response.get_data(as_text=True)[:500]
    assert stored(services) == before
