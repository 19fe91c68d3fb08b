"""batch and transaction Bundles: all-or-nothing, urn:uuid rewriting, conditional entries."""

from __future__ import annotations

import base64
import json

from tests.conftest import make_document, make_patient, make_practitioner


def tx(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource, full_url=None, **request):
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def count(services, rt=None):
    query = {"state": "live", "rt": {"$ne": "AuditEvent"}}  # the server audits every request
    if rt:
        query["rt"] = rt
    return services.repository.count(query)


def test_transaction_creates_everything_and_rewrites_urn_uuid_references(client, services):
    doc = make_document("urn:uuid:p1", "urn:uuid:dr1")
    doc["content"][0]["attachment"]["url"] = "urn:uuid:b1"
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"Bonjour").decode()}
    response = client.post(
        "/fhir",
        json=tx(
            post(make_patient(), "urn:uuid:p1"),
            post(make_practitioner(), "urn:uuid:dr1"),
            post(doc, "urn:uuid:d1"),
            post(binary, "urn:uuid:b1"),
        ),
    )
    assert response.status_code == 200, response.json
    bundle = response.json
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created"] * 4
    patient_id = bundle["entry"][0]["response"]["location"].split("/")[1]
    binary_id = bundle["entry"][3]["response"]["location"].split("/")[1]
    stored = bundle["entry"][2]["resource"]
    assert stored["subject"]["reference"] == f"Patient/{patient_id}"
    assert stored["content"][0]["attachment"]["url"] == f"Binary/{binary_id}"
    assert client.get(f"/fhir/Binary/{binary_id}", headers={"Accept": "text/plain"}).data == b"Bonjour"


def test_transaction_failing_on_its_last_entry_leaves_nothing(client, services):
    bad = make_patient(rank="009")
    bad["birthDate"] = "not a date"
    response = client.post(
        "/fhir", json=tx(post(make_patient(), "urn:uuid:a"), post(make_practitioner(), "urn:uuid:b"), post(bad))
    )
    assert response.status_code == 422
    issue = response.json["issue"][0]
    assert issue["expression"] == ["Bundle.entry[2].resource.birthDate"]
    assert count(services) == 0
    assert services.repository.history_coll.count_documents({}) == 0


def test_transaction_with_a_stale_if_match_on_its_last_entry_changes_nothing(client, services):
    patient = client.post("/fhir/Patient", json=make_patient()).json
    client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": "other"})
    response = client.post(
        "/fhir",
        json=tx(
            post(make_practitioner(), "urn:uuid:x"),
            {
                "resource": {**patient, "gender": "male"},
                "request": {"method": "PUT", "url": f"Patient/{patient['id']}", "ifMatch": 'W/"1"'},
            },
        ),
    )
    assert response.status_code == 412
    assert count(services, "Practitioner") == 0
    current = client.get(f"/fhir/Patient/{patient['id']}").json
    assert current["gender"] == "other" and current["meta"]["versionId"] == "2"
    # no lock is left behind: a plain update still works
    assert client.put(f"/fhir/Patient/{patient['id']}", json=current).status_code == 200


def test_transaction_conditional_create_reuses_the_match_and_references_point_to_it(client):
    patient = make_patient()
    existing = client.post("/fhir/Patient", json=patient).json
    ins = patient["identifier"][0]
    response = client.post(
        "/fhir",
        json=tx(
            post(patient, "urn:uuid:p", ifNoneExist=f"identifier={ins['system']}|{ins['value']}"),
            post(make_document("urn:uuid:p"), "urn:uuid:d"),
        ),
    )
    assert response.status_code == 200
    entries = response.json["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"


def test_transaction_update_delete_patch_and_read(client):
    p1 = client.post("/fhir/Patient", json=make_patient(rank="001")).json
    p2 = client.post("/fhir/Patient", json=make_patient(rank="002")).json
    p3 = client.post("/fhir/Patient", json=make_patient(rank="003")).json
    patch = base64.b64encode(json.dumps([{"op": "replace", "path": "/gender", "value": "other"}]).encode()).decode()
    response = client.post(
        "/fhir",
        json=tx(
            {"resource": {**p1, "gender": "male"}, "request": {"method": "PUT", "url": f"Patient/{p1['id']}"}},
            {"request": {"method": "DELETE", "url": f"Patient/{p2['id']}"}},
            {
                "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                "request": {"method": "PATCH", "url": f"Patient/{p3['id']}"},
            },
            {"request": {"method": "GET", "url": f"Patient/{p1['id']}"}},
        ),
    )
    assert response.status_code == 200, response.json
    statuses = [e["response"]["status"] for e in response.json["entry"]]
    assert statuses == ["200 OK", "204 No Content", "200 OK", "200 OK"]
    assert response.json["entry"][3]["resource"]["gender"] == "male"  # reads see the transaction's writes
    assert client.get(f"/fhir/Patient/{p2['id']}").status_code == 410
    assert client.get(f"/fhir/Patient/{p3['id']}").json["gender"] == "other"


def test_transaction_conditional_update_by_identifier_creates_then_updates(client):
    patient = make_patient()
    ins = patient["identifier"][0]
    url = f"Patient?identifier={ins['system']}|{ins['value']}"
    first = client.post("/fhir", json=tx({"resource": patient, "request": {"method": "PUT", "url": url}}))
    assert first.json["entry"][0]["response"]["status"] == "201 Created"
    second = client.post("/fhir", json=tx({"resource": {**patient, "gender": "other"}, "request": {"method": "PUT", "url": url}}))
    assert second.json["entry"][0]["response"]["status"] == "200 OK"
    assert second.json["entry"][0]["resource"]["id"] == first.json["entry"][0]["resource"]["id"]


def test_transaction_writing_one_resource_twice_is_400(client, services):
    patient = client.post("/fhir/Patient", json=make_patient()).json
    entry = {"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}
    assert client.post("/fhir", json=tx(entry, entry)).status_code == 400


def test_batch_entries_succeed_or_fail_independently(client, services):
    bad = make_patient(rank="002")
    bad["gender"] = "robot"
    response = client.post(
        "/fhir",
        json=tx(
            post(make_patient()),
            post(bad),
            {"request": {"method": "GET", "url": "Patient/unknown"}},
            {"request": {"method": "GET", "url": "Patient?family=lefevre"}},
            kind="batch",
        ),
    )
    assert response.status_code == 200
    entries = response.json["entry"]
    assert response.json["type"] == "batch-response"
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "422"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"] == "404"
    assert entries[3]["resource"]["total"] == 1
    assert count(services, "Patient") == 1


def test_bundle_envelope_errors(client):
    assert client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert client.post("/fhir", json=tx({"resource": make_patient()})).status_code == 400
    assert client.post("/fhir", json={"resourceType": "Patient"}).status_code == 400
