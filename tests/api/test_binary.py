"""Binary: raw bytes in and out, FHIR JSON when asked, blobs above the size threshold."""

from __future__ import annotations

import base64
import os

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_raw_upload_and_raw_download(client):
    created = client.post("/fhir/Binary", data=PDF, content_type="application/pdf")
    assert created.status_code == 201
    body = created.json
    assert body["contentType"] == "application/pdf" and base64.b64decode(body["data"]) == PDF
    raw = client.client.get(f"/fhir/Binary/{body['id']}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200 and raw.data == PDF and raw.mimetype == "application/pdf"
    assert raw.headers["ETag"] == 'W/"1"'


def test_binary_as_fhir_json_when_asked(client):
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": base64.b64encode(b"bonjour").decode()}
    bid = client.post("/fhir/Binary", json=binary).json["id"]
    as_json = client.get(f"/fhir/Binary/{bid}")
    assert as_json.json["resourceType"] == "Binary" and as_json.json["data"] == binary["data"]
    as_format = client.client.get(f"/fhir/Binary/{bid}?_format=json")
    assert as_format.get_json()["resourceType"] == "Binary"


def test_large_binary_goes_to_a_blob_and_comes_back_intact(app, client, services):
    payload = os.urandom(app.config["DMP_SETTINGS"].blob_threshold_bytes + 1000)
    created = client.post("/fhir/Binary", data=payload, content_type="image/png")
    assert created.status_code == 201
    bid = created.json["id"]
    stored = services.repository.resources.find_one({"_id": f"Binary/{bid}"})
    assert "data" not in stored["res"], "large content must not live inside the resource document"
    assert services.repository.db["blobs"].count_documents({}) == 1
    raw = client.client.get(f"/fhir/Binary/{bid}", headers={"Accept": "image/png"})
    assert raw.data == payload
    as_json = client.get(f"/fhir/Binary/{bid}").json
    assert base64.b64decode(as_json["data"]) == payload
    # an update keeping the same bytes shares the stored blob
    client.put(f"/fhir/Binary/{bid}", data=payload, content_type="image/png")
    assert services.repository.db["blobs"].count_documents({}) == 1
    assert client.client.get(f"/fhir/Binary/{bid}/_history/1").status_code == 200


def test_invalid_base64_is_422(client):
    response = client.post("/fhir/Binary", json={"resourceType": "Binary", "contentType": "text/plain", "data": "@@@"})
    assert response.status_code == 422


def test_retrieve_document_with_range_and_content_disposition(client):
    payload = bytes(range(256)) * 40
    bid = client.post("/fhir/Binary", data=payload, content_type="application/pdf").json["id"]
    full = client.client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/pdf"})
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Disposition"] == f'attachment; filename="{bid}.pdf"'
    part = client.client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/pdf", "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == payload[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(payload)}"
    tail = client.client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/pdf", "Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == payload[-5:]
    bad = client.client.get(f"/fhir/Binary/{bid}", headers={"Accept": "application/pdf", "Range": f"bytes={len(payload)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(payload)}"
    assert bad.get_json()["resourceType"] == "OperationOutcome"
