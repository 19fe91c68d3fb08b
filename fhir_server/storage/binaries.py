"""Binary content: small payloads stay inside the resource, larger ones in the `blobs` collection.

Content leaves the resource from a few kB up so that resource and history documents stay small:
they are what every search, history page and policy check reads, and a document is read whole.

Blobs are content-addressed (`_id` = SHA-256 of the bytes): every version of a Binary that keeps
the same bytes shares one blob, and writing the same blob twice is harmless. A blob is a head
document holding the first piece, then one document per further piece (pieces stay under the
16 MB BSON limit). Every piece is found by its `_id`, the one lookup that every MongoDB
wire-protocol server answers from its primary key; GridFS needed a second query, on a
secondary index, for every read. Content that earlier versions stored in GridFS (same content
address) is still read from there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

import gridfs
from bson.binary import Binary
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fhir_server.fhir.errors import Issue, unprocessable

BLOB_KEY = "__blob"  # never a FHIR element name
PIECE_BYTES = 8 * 1024 * 1024


class BinaryStore:
    def __init__(self, db: Database, threshold: int):
        self._db = db
        self._blobs = db["blobs"]
        self._threshold = threshold

    def externalise(self, resource: dict) -> dict:
        """Return the resource to store: `data` moved to a blob when it is large."""
        data = resource.get("data")
        if resource.get("resourceType") != "Binary" or not isinstance(data, str):
            return resource
        raw = decode_base64(data)
        if len(raw) < self._threshold:
            return resource
        blob_id = hashlib.sha256(raw).hexdigest()
        if self._blobs.find_one({"_id": blob_id}, {"_id": 1}) is None:
            self._put(blob_id, raw)
        stored = dict(resource)
        del stored["data"]
        stored[BLOB_KEY] = blob_id
        return stored

    def internalise(self, stored: dict, data: str | None = None) -> dict:
        """The FHIR resource for a stored one, its blob inlined as base64 `data`. A writer passes
        the `data` it has just stored, which spares reading the blob back."""
        blob_id = stored.get(BLOB_KEY)
        if blob_id is None:
            return stored
        resource = {k: v for k, v in stored.items() if k != BLOB_KEY}
        resource["data"] = data if data is not None else base64.b64encode(self._get(blob_id)).decode("ascii")
        return resource

    def raw_bytes(self, stored: dict) -> bytes:
        blob_id = stored.get(BLOB_KEY)
        if blob_id is not None:
            return self._get(blob_id)
        return decode_base64(stored.get("data") or "")

    def _put(self, blob_id: str, raw: bytes) -> None:
        pieces = [raw[i : i + PIECE_BYTES] for i in range(0, len(raw), PIECE_BYTES)] or [b""]
        for n, piece in enumerate(pieces[1:], start=1):
            self._upsert(f"{blob_id}.{n}", {"data": Binary(piece)})
        # The head goes last: a blob whose head exists is complete.
        self._upsert(blob_id, {"size": len(raw), "pieces": len(pieces), "data": Binary(pieces[0])})

    def _upsert(self, piece_id: str, piece: dict) -> None:
        try:
            self._blobs.replace_one({"_id": piece_id}, piece, upsert=True)
        except DuplicateKeyError:
            pass  # a concurrent writer stored the same bytes first: same address, same content

    def _get(self, blob_id: str) -> bytes:
        head = self._blobs.find_one({"_id": blob_id})
        if head is None:
            return self._from_gridfs(blob_id)
        pieces = [bytes(head["data"])]
        for n in range(1, head["pieces"]):
            piece = self._blobs.find_one({"_id": f"{blob_id}.{n}"})
            if piece is None:
                raise LookupError(f"blob {blob_id} misses piece {n}")
            pieces.append(bytes(piece["data"]))
        return b"".join(pieces)

    def _from_gridfs(self, blob_id: str) -> bytes:
        """Content stored before blobs replaced GridFS: same content address, in `blobs.files`."""
        if self._db["blobs.files"].find_one({"_id": blob_id}, {"_id": 1}) is None:
            raise LookupError(f"blob {blob_id} is missing")
        return gridfs.GridFS(self._db, collection="blobs").get(blob_id).read()


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise unprocessable([Issue("Binary.data is not valid base64.", "value", expression=["Binary.data"])])
