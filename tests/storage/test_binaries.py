"""Blob storage of Binary content: pieces by `_id`, content-addressed, nothing lost on the way back."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from fhir_server.storage import binaries
from fhir_server.storage.binaries import BLOB_KEY, BinaryStore


def _binary(raw: bytes) -> dict:
    return {"resourceType": "Binary", "contentType": "application/pdf", "data": base64.b64encode(raw).decode()}


@pytest.fixture()
def store(services, monkeypatch):
    monkeypatch.setattr(binaries, "PIECE_BYTES", 1000)  # several pieces without megabytes of test data
    return BinaryStore(services.repository.db, threshold=100)


def test_content_in_several_pieces_comes_back_byte_for_byte(store, services):
    raw = os.urandom(3500)
    stored = store.externalise(_binary(raw))
    assert "data" not in stored and stored[BLOB_KEY]
    assert services.repository.db["blobs"].count_documents({}) == 4  # head + 3 pieces
    assert store.raw_bytes(stored) == raw
    assert base64.b64decode(store.internalise(stored)["data"]) == raw


def test_same_bytes_are_stored_once(store, services):
    raw = os.urandom(2500)
    first, second = store.externalise(_binary(raw)), store.externalise(_binary(raw))
    assert first[BLOB_KEY] == second[BLOB_KEY]
    assert services.repository.db["blobs"].count_documents({}) == 3


def test_small_content_stays_inside_the_resource(store):
    resource = _binary(b"court")
    assert store.externalise(resource) is resource


def test_writer_gets_its_data_back_without_a_read(store, services):
    resource = _binary(os.urandom(500))
    stored = store.externalise(resource)
    services.repository.db["blobs"].delete_many({})  # a read would now fail
    assert store.internalise(stored, resource["data"])["data"] == resource["data"]
    with pytest.raises(LookupError):
        store.raw_bytes(stored)


def test_a_missing_piece_is_an_error_not_short_content(store, services):
    stored = store.externalise(_binary(os.urandom(2500)))
    services.repository.db["blobs"].delete_one({"_id": f"{stored[BLOB_KEY]}.2"})
    with pytest.raises(LookupError):
        store.raw_bytes(stored)


def test_content_stored_in_gridfs_by_earlier_versions_is_still_read(store, services):
    import gridfs

    raw = os.urandom(3000)
    blob_id = hashlib.sha256(raw).hexdigest()
    db = services.repository.db
    gridfs.GridFS(db, collection="blobs").put(raw, _id=blob_id)
    try:
        assert store.raw_bytes({"resourceType": "Binary", BLOB_KEY: blob_id}) == raw
    finally:
        db["blobs.files"].delete_many({})
        db["blobs.chunks"].delete_many({})
