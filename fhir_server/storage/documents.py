"""MongoDB collections, declared with mongoengine so that their indexes live beside their shape.

Hot paths use the underlying pymongo collection (`Model._get_collection()`) for atomic
conditional updates; mongoengine owns the declarations and the connection.

resources     one document per (type, id): the current version, its search index entries
              (`idx`) and compartments, or a tombstone after a delete. `vid` is the optimistic
              lock: every update filters on the version it read.
history       every version ever written (append-only); `_id` = "Type/id/vid" makes two
              writers of the same next version collide, which is the write lock.
transactions  the journal of a transaction between its commit point and its application,
              so that a process that dies half-way is rolled forward (or back) at start-up.
"""

from __future__ import annotations

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    StringField,
)

# The search index is a multikey array of small entries, one shape per parameter type
# ({p, s, c} token, {p, v} string, {p, lo, hi} date, {p, r} reference, {p, n} number, {p, u} uri),
# so one compound index per shape answers every parameter of that shape.
SEARCH_INDEXES = [
    {"fields": ["rt", "idx.p", "idx.c", "idx.s"], "name": "search_token"},
    {"fields": ["rt", "idx.p", "idx.v"], "name": "search_string"},
    {"fields": ["rt", "idx.p", "idx.lo", "idx.hi"], "name": "search_date"},
    {"fields": ["rt", "idx.p", "idx.r"], "name": "search_reference"},
    {"fields": ["rt", "idx.p", "idx.n"], "name": "search_number"},
    {"fields": ["rt", "idx.p", "idx.u"], "name": "search_uri"},
]


class StoredResource(Document):
    """The current state of one resource."""

    id = StringField(primary_key=True)  # "Patient/123"
    rt = StringField(required=True)
    rid = StringField(required=True)
    vid = IntField(required=True)  # 0 while a transaction holds a not-yet-committed create
    ts = DateTimeField(required=True)
    state = StringField(required=True, choices=("live", "deleted", "pending"))
    res = DictField()
    idx = ListField(DictField())
    comp = ListField(StringField())  # compartments, e.g. ["Patient/123"]
    sk = DictField()  # one sortable value per search parameter, for _sort
    wid = StringField()  # id of the write that produced this version (roll-forward bookkeeping)
    txn = StringField()  # lock held by a transaction
    txn_at = DateTimeField()

    meta = {
        "collection": "resources",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["rt", "state", "ts", "id"], "name": "type_lastupdated"},
            {"fields": ["comp", "rt"], "name": "compartment"},
            {"fields": ["txn"], "name": "transaction_lock", "sparse": True},
            *SEARCH_INDEXES,
        ],
    }


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


ALL_DOCUMENTS = (StoredResource, ResourceVersion, TransactionJournal)


def ensure_indexes() -> None:
    for model in ALL_DOCUMENTS:
        model.ensure_indexes()
