"""The two collections of the subscription machinery, declared with mongoengine beside their indexes.

subscriptions        one record per Subscription resource ("Subscription/<id>"): who owns it (the
                     principal that created it: client, user, patient in context, scopes...), the
                     base URL its criteria were written against, and a routing copy (`rt`, `live`,
                     `patients`) so that a write looks only at the subscriptions of its type and of
                     its patients. Server-side only: never part of the resource, never served.
subscription_outbox  one entry per notification to deliver ("<subscription>|<resource>|<vid>"):
                     pending -> delivering (leased by a worker) -> deleted once delivered or dropped,
                     or `dead` after the last failed attempt (kept for the operator).

Both stay small (delivered entries are removed), and the worker's queries are plain equality /
range filters: FerretDB scans them cheaply, MongoDB uses the declared indexes.
"""

from __future__ import annotations

from mongoengine import BooleanField, DateTimeField, DictField, Document, IntField, ListField, StringField
from pymongo.database import Database

from fhir_server.storage.documents import collection


class SubscriptionRecord(Document):
    id = StringField(primary_key=True)  # "Subscription/<id>"
    owner = DictField(required=True)  # see subscriptions.owner.snapshot()
    base_url = StringField()  # the FHIR base the criteria refer to (absolute references)
    rt = StringField()  # the resource type of the criteria (None until the resource is written)
    live = BooleanField(default=False)  # not deleted and status active or error
    # routing by compartment: the patients the criteria name, or any_patient when they name none
    patients = ListField(StringField())
    any_patient = BooleanField(default=True)
    claimed = DateTimeField(required=True)

    meta = {  # noqa: RUF012 (mongoengine reads it as a class attribute)
        "collection": "subscriptions",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["rt", "live", "any_patient"], "name": "routing"},
            {"fields": ["rt", "live", "patients"], "name": "routing_by_patient"},
            {"fields": ["owner.key"], "name": "owner"},
        ],
    }


class OutboxEntry(Document):
    id = StringField(primary_key=True)  # "Subscription/<sid>|<Type>/<id>|<vid>": enqueueing is idempotent
    sub = StringField(required=True)  # "Subscription/<sid>"
    key = StringField(required=True)  # "DocumentReference/<id>"
    vid = IntField(required=True)  # the version whose write queued the notification
    state = StringField(required=True, choices=("pending", "delivering", "dead"))
    attempts = IntField(default=0)
    next_at = DateTimeField(required=True)  # not before this instant (backoff)
    lease_until = DateTimeField()  # a worker owns a `delivering` entry until then
    created = DateTimeField(required=True)
    last_error = StringField()

    meta = {  # noqa: RUF012 (mongoengine reads it as a class attribute)
        "collection": "subscription_outbox",
        "auto_create_index": False,
        "indexes": [
            {"fields": ["state", "next_at"], "name": "due"},
            {"fields": ["sub"], "name": "by_subscription"},
        ],
    }


DOCUMENTS = (SubscriptionRecord, OutboxEntry)


def ensure_indexes(db: Database) -> None:
    for model in DOCUMENTS:
        coll = collection(db, model)
        for spec in model._meta["index_specs"]:
            options = {k: v for k, v in spec.items() if k != "fields"}
            coll.create_index(spec["fields"], **options)
