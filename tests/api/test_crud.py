"""The REST interactions on single resources, as a client sees them over HTTP."""

from __future__ import annotations

import email.utils

from tests.conftest import make_patient, make_practitioner


def create(client, resource):
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.json
    return response


def test_create_assigns_id_version_and_returns_location_etag_last_modified(client):
    response = create(client, make_patient())
    body = response.json
    assert body["id"] and body["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert email.utils.parsedate_to_datetime(response.headers["Last-Modified"])
    assert body["name"][0]["family"] == "Lefèvre"


def test_create_ignores_a_client_supplied_id(client):
    body = create(client, {**make_patient(), "id": "chosen-by-client"}).json
    assert body["id"] != "chosen-by-client"


def test_read_and_vread(client):
    pid = create(client, make_patient()).json["id"]
    read = client.get(f"/fhir/Patient/{pid}")
    assert read.status_code == 200 and read.json["id"] == pid
    assert read.headers["ETag"] == 'W/"1"'
    assert read.content_type.startswith("application/fhir+json")
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json["meta"]["versionId"] == "1"
    assert client.get(f"/fhir/Patient/{pid}/_history/7").status_code == 404
    assert client.get("/fhir/Patient/does-not-exist").status_code == 404


def test_update_creates_a_new_version_and_keeps_the_old_one(client):
    patient = create(client, make_patient()).json
    patient["gender"] = "other"
    updated = client.put(f"/fhir/Patient/{patient['id']}", json=patient)
    assert updated.status_code == 200
    assert updated.json["meta"]["versionId"] == "2" and updated.headers["ETag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{patient['id']}/_history/1").json["gender"] == "female"
    assert client.get(f"/fhir/Patient/{patient['id']}").json["gender"] == "other"


def test_update_as_create_with_a_client_id(client):
    patient = {**make_patient(), "id": "ins-280017505600142"}
    response = client.put("/fhir/Patient/ins-280017505600142", json=patient)
    assert response.status_code == 201
    assert response.json["meta"]["versionId"] == "1"
    assert client.get("/fhir/Patient/ins-280017505600142").status_code == 200


def test_update_with_mismatched_id_is_400_and_changes_nothing(client):
    patient = create(client, make_patient()).json
    response = client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "id": "other", "gender": "male"})
    assert response.status_code == 400
    assert response.json["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{patient['id']}").json["gender"] == "female"


def test_if_match_stale_version_is_412(client):
    patient = create(client, make_patient()).json
    first = client.put(f"/fhir/Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"1"'})
    assert first.status_code == 200
    stale = client.put(f"/fhir/Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json["issue"][0]["code"] == "conflict"


def test_conditional_read_answers_304(client):
    response = create(client, make_patient())
    pid = response.json["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    last_modified = response.headers["Last-Modified"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": last_modified}).status_code == 304
    past = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": past}).status_code == 200


def test_json_patch(client):
    pid = create(client, make_patient()).json["id"]
    response = client.patch(f"/fhir/Patient/{pid}", [{"op": "replace", "path": "/gender", "value": "male"}])
    assert response.status_code == 200
    assert response.json["gender"] == "male" and response.json["meta"]["versionId"] == "2"


def test_json_patch_that_breaks_the_resource_is_422_and_stores_nothing(client):
    pid = create(client, make_patient()).json["id"]
    response = client.patch(f"/fhir/Patient/{pid}", [{"op": "add", "path": "/birthDate", "value": "not-a-date"}])
    assert response.status_code == 422
    assert client.get(f"/fhir/Patient/{pid}").json["meta"]["versionId"] == "1"


def test_json_patch_needs_the_json_patch_media_type(client):
    pid = create(client, make_patient()).json["id"]
    response = client.client.patch(
        f"/fhir/Patient/{pid}", json=[{"op": "remove", "path": "/gender"}], headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 415


def test_delete_then_read_is_410_and_history_shows_the_deletion(client):
    pid = create(client, make_patient()).json["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    history = client.get(f"/fhir/Patient/{pid}/_history").json
    assert history["type"] == "history" and history["total"] == 2
    assert history["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in history["entry"][0]
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    assert client.delete("/fhir/Patient/never-existed").status_code == 404


def test_update_after_delete_brings_the_resource_back(client):
    patient = create(client, make_patient()).json
    client.delete(f"/fhir/Patient/{patient['id']}")
    response = client.put(f"/fhir/Patient/{patient['id']}", json=patient)
    assert response.status_code == 201 and response.json["meta"]["versionId"] == "3"


def test_conditional_create_returns_the_existing_match(client):
    patient = make_patient()
    ins = patient["identifier"][0]
    criteria = f"identifier={ins['system']}|{ins['value']}"
    first = client.post("/fhir/Patient", json=patient, headers={"If-None-Exist": criteria})
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=patient, headers={"If-None-Exist": criteria})
    assert second.status_code == 200 and second.json["id"] == first.json["id"]


def test_conditional_create_with_several_matches_is_412(client):
    create(client, make_patient(rank="001"))
    create(client, make_patient(rank="002"))
    response = client.post("/fhir/Patient", json=make_patient(rank="003"), headers={"If-None-Exist": "family=Lefèvre"})
    assert response.status_code == 412


def test_conditional_update_updates_the_match_or_creates(client):
    patient = make_patient()
    ins = patient["identifier"][0]
    url = f"/fhir/Patient?identifier={ins['system']}|{ins['value']}"
    created = client.put(url, json=patient)
    assert created.status_code == 201
    again = client.put(url, json={**patient, "gender": "other"})
    assert again.status_code == 200 and again.json["id"] == created.json["id"]
    assert again.json["meta"]["versionId"] == "2"


def test_conditional_delete(client):
    pid = create(client, make_practitioner(rpps="10001111111")).json["id"]
    response = client.delete("/fhir/Practitioner?identifier=https://rpps.esante.gouv.fr|10001111111")
    assert response.status_code == 204
    assert client.get(f"/fhir/Practitioner/{pid}").status_code == 410


def test_prefer_return_minimal_and_operation_outcome(client):
    minimal = client.post("/fhir/Patient", json=make_patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.data == b"" and minimal.headers["Location"]
    outcome = client.post("/fhir/Patient", json=make_patient(rank="002"), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201 and outcome.json["resourceType"] == "OperationOutcome"


def test_instance_type_and_system_history(client):
    patient = create(client, make_patient()).json
    client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": "other"})
    create(client, make_practitioner())
    assert client.get(f"/fhir/Patient/{patient['id']}/_history").json["total"] == 2
    assert client.get("/fhir/Patient/_history").json["total"] == 2
    system = client.get("/fhir/_history").json
    assert system["total"] == 3
    versions = [e["response"]["etag"] for e in system["entry"]]
    assert versions[0] == 'W/"1"'  # newest first: the practitioner


def test_history_paging_and_since(client):
    patient = create(client, make_patient()).json
    for gender in ("male", "other", "unknown", "female"):
        patient = client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": gender}).json
    page = client.get("/fhir/_history?_count=2").json
    assert page["total"] == 5 and len(page["entry"]) == 2
    seen = [e["response"]["etag"] for e in page["entry"]]
    next_url = next(l["url"] for l in page["link"] if l["relation"] == "next")
    while next_url:
        page = client.get(next_url.split("localhost", 1)[1]).json
        seen += [e["response"]["etag"] for e in page["entry"]]
        next_url = next((l["url"] for l in page["link"] if l["relation"] == "next"), None)
    assert seen == ['W/"5"', 'W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    instance = client.get(f"/fhir/Patient/{patient['id']}/_history?_count=2").json
    assert len(instance["entry"]) == 2 and any(l["relation"] == "next" for l in instance["link"])
    future = client.get("/fhir/_history?_since=2999-01-01").json
    assert future["total"] == 0
