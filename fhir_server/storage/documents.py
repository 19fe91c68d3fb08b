"""MongoDB collections, declared with mongoengine so that their indexes live beside their shape.

Hot paths use the underlying pymongo collection (`Model._get_collection()`) for atomic
conditional updates; mongoengine owns the declarations and the connection.

resources     one document per (type, id): the current version, its search index entries
              (`ix`) and compartments, or a tombstone after a delete. `vid` is the optimistic
              lock: every update filters on the version it read.
history       every version ever written (append-only); `_id` = "Type/id/vid" makes two
              writers of the same next version collide, which is the write lock.
transactions  the journal of a transaction between its commit point and its application,
              so that a process that dies half-way is rolled forward (or back) at start-up.
"""

from __future__ import annotations

from pymongo.collection import Collection
from pymongo.database import Database
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    StringField,
)

# The search index lives in the `ix` sub-document (see search.extract for its shape): one
# multikey index per key family answers every parameter of that family; dates and sort keys are
# scalars per parameter code, indexed for the codes the registry declares (see date_indexes()).
SEARCH_INDEXES = [
    {"fields": ["rt", "ix.tk"], "name": "search_token"},
    {"fields": ["rt", "ix.st"], "name": "search_string"},
    {"fields": ["rt", "ix.sx"], "name": "search_string_exact"},
    {"fields": ["rt", "ix.rf"], "name": "search_reference"},
    {"fields": ["rt", "ix.ur"], "name": "search_uri"},
    {"fields": ["rt", "ix.pp"], "name": "search_present"},
]


class _CurrentState(Document):
    """The current state of one resource (fields shared by `resources` and `audit_events`)."""

    id = StringField(primary_key=True)  # "Patient/123"
    rt = StringField(required=True)
    rid = StringField(required=True)
    vid = IntField(required=True)  # 0 while a transaction holds a not-yet-committed create
    ts = DateTimeField(required=True)
    state = StringField(required=True, choices=("live", "deleted", "pending"))
    res = DictField()
    ix = DictField()  # search index keys (search.extract)
    comp = ListField(StringField())  # compartments, e.g. ["Patient/123"]
    sk = DictField()  # one sortable value per search parameter, for _sort
    cts = DateTimeField()  # when the resource was first created (INVISIBLE_PATIENT lapses from it)
    wid = StringField()  # id of the write that produced this version (roll-forward bookkeeping)
    txn = StringField()  # lock held by a transaction
    txn_at = DateTimeField()

    meta = {"abstract": True}


CURRENT_STATE_INDEXES = [
    {"fields": ["rt", "state", "ts", "id"], "name": "type_lastupdated"},
    {"fields": ["comp", "rt", "cts"], "name": "compartment_cts"},
    {"fields": ["txn"], "name": "transaction_lock", "sparse": True},
    *SEARCH_INDEXES,
]


class StoredResource(_CurrentState):
    """Current versions of clinical and directory resources."""

    meta = {"collection": "resources", "auto_create_index": False, "indexes": CURRENT_STATE_INDEXES}


class AuditRecord(_CurrentState):
    """AuditEvents: same shape and indexes as `resources`, in a collection of their own."""

    meta = {"collection": "audit_events", "auto_create_index": False, "indexes": CURRENT_STATE_INDEXES}


class ResourceVersion(Document):
    """One version of a resource, kept forever (history, vread)."""

    id = StringField(primary_key=True)  # "Patient/123/2"
    key = StringField(required=True)  # "Patient/123"
    rt = StringField(required=True)
    rid = StringField(required=True)
    vid = IntField(required=True)
    ts = DateTimeField(required=True)
    deleted = BooleanField(default=False)
    method = StringField(required=True)  # POST, PUT, PATCH, DELETE
    res = DictField()
    wid = StringField()

    meta = {
        "collection": "history",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["key", "-vid"], "name": "instance_history"},
            {"fields": ["rt", "-ts", "id"], "name": "type_history"},
            {"fields": ["-ts", "id"], "name": "system_history"},
        ],
    }


class TransactionJournal(Document):
    """A committed transaction that is still being applied."""

    id = StringField(primary_key=True)
    state = StringField(required=True, choices=("committed",))
    created = DateTimeField(required=True)
    ops = ListField(DictField())

    meta = {"collection": "transactions", "auto_create_index": False, "indexes": ["created"]}


ALL_DOCUMENTS = (StoredResource, AuditRecord, ResourceVersion, TransactionJournal)


def collection(db: Database, model: type[Document]) -> Collection:
    """The pymongo collection of a declared document class, in the given database.

    Taken from `db` rather than from mongoengine's class-level cache so that several apps (tests,
    tools) can each work on their own database in one process.
    """
    return db[model._meta["collection"]]


def ensure_indexes(db: Database, date_codes: list[str] = (), sort_codes: list[str] = ()) -> None:
    """Create the declared indexes, plus one per date parameter code and per sortable code."""
    for model in ALL_DOCUMENTS:
        coll = collection(db, model)
        for spec in model._meta["index_specs"]:
            options = {k: v for k, v in spec.items() if k != "fields"}
            coll.create_index(spec["fields"], **options)
    for resources in (collection(db, StoredResource), collection(db, AuditRecord)):
        for code in sorted(set(date_codes)):
            resources.create_index(
                [("rt", 1), (f"ix.dt.{code}.lo", 1), (f"ix.dt.{code}.hi", 1)], name=f"search_date_{code}"
            )
        for code in sorted(set(sort_codes)):
            resources.create_index([("rt", 1), (f"sk.{code}", 1), ("_id", 1)], name=f"sort_{code}")
