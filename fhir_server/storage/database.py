"""The MongoDB connection: a real server from MONGODB_URI, else an in-process mongomock store."""

from __future__ import annotations

import logging
import uuid

import mongoengine
from pymongo.database import Database

from fhir_server.config import Settings

log = logging.getLogger(__name__)

IN_PROCESS_WARNING = (
    "MONGODB_URI is not set: using the IN-PROCESS store (mongomock). Data lives in this process "
    "only and is lost when it stops. Set MONGODB_URI=mongodb://... to use a real MongoDB."
)


def connect(settings: Settings) -> Database:
    """Open a mongoengine connection of its own for this app and return its pymongo database.

    Each app gets its own alias, so several apps (tests, tools) can live in one process.
    """
    alias = f"dmp-{uuid.uuid4().hex[:12]}"
    if settings.mongodb_uri:
        mongoengine.connect(
            alias=alias,
            db=settings.database,
            host=settings.mongodb_uri,
            tz_aware=True,
            uuidRepresentation="standard",
            serverSelectionTimeoutMS=10_000,
        )
        log.info("storage: MongoDB at %s, database %s", _redact(settings.mongodb_uri), settings.database)
    else:
        import mongomock

        mongoengine.connect(
            alias=alias,
            db=settings.database,
            host="mongodb://localhost",
            mongo_client_class=mongomock.MongoClient,
            tz_aware=True,
        )
        log.warning(IN_PROCESS_WARNING)
    return mongoengine.get_db(alias)


def _redact(uri: str) -> str:
    if "@" in uri:
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return uri
