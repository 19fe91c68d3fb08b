"""Binary content: small payloads stay inside the resource, large ones go to GridFS.

GridFS files are content-addressed (`_id` = SHA-256 of the bytes), so every version of a Binary
that keeps the same bytes shares one file, and writing the same file twice is harmless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import gridfs
from pymongo.database import Database

from fhir_server.fhir.errors import Issue, unprocessable

BLOB_KEY = "__blob"  # never a FHIR element name


class BinaryStore:
    def __init__(self, db: Database, threshold: int):
        self._fs = gridfs.GridFS(db, collection="blobs")
        self._threshold = threshold

    def externalise(self, resource: dict) -> dict:
        """Return the resource to store: `data` moved to GridFS when it is large."""
        data = resource.get("data")
        if resource.get("resourceType") != "Binary" or not isinstance(data, str):
            return resource
        raw = decode_base64(data)
        if len(raw) < self._threshold:
            return resource
        blob_id = hashlib.sha256(raw).hexdigest()
        if not self._fs.exists(blob_id):
            try:
                self._fs.put(raw, _id=blob_id, contentType=resource.get("contentType"))
            except gridfs.errors.FileExists:
                pass
        stored = dict(resource)
        del stored["data"]
        stored[BLOB_KEY] = blob_id
        return stored

    def internalise(self, stored: dict) -> dict:
        """The FHIR resource for a stored one (GridFS content inlined as base64 `data`)."""
        blob_id = stored.get(BLOB_KEY)
        if blob_id is None:
            return stored
        resource = {k: v for k, v in stored.items() if k != BLOB_KEY}
        resource["data"] = base64.b64encode(self._fs.get(blob_id).read()).decode("ascii")
        return resource

    def raw_bytes(self, stored: dict) -> bytes:
        blob_id = stored.get(BLOB_KEY)
        if blob_id is not None:
            return self._fs.get(blob_id).read()
        return decode_base64(stored.get("data") or "")


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable([Issue("Binary.data is not valid base64.", "value", expression=["Binary.data"])])
