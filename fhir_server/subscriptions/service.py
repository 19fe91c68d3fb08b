"""Subscriptions as the rest of the server sees them: a write hook, a write listener, a worker.

- `before_write` (called by the interaction layer for every create, update and patch of a
  Subscription, transactions included): validates the resource (422s), checks that the caller may
  search the criteria's type, sets the server-owned status and records the caller as the owner.
- `on_written` (called by the repository after every write has succeeded; for a transaction after
  its commit): matches the new version against the live subscriptions of its type and queues one
  outbox entry per match. The match ignores access: access is decided at delivery time.
- `prepare` (called by the worker for each due entry): decides, with the owner's rights *now*,
  whether the notification may leave at all, and what it carries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from mongomock.filtering import filter_applies
from pymongo.errors import DuplicateKeyError

from fhir_server.fhir.errors import FhirError
from fhir_server.storage.documents import collection
from fhir_server.storage.repository import as_utc, utcnow
from fhir_server.subscriptions.owner import principal_of, snapshot
from fhir_server.subscriptions.resource import (
    FULL_RESOURCE,
    NOT_NOTIFIED,
    check_channel,
    check_status,
    compile_criteria,
    criteria_patients,
    header_pairs,
    parse_criteria,
    with_server_status,
)
from fhir_server.subscriptions.settings import SubscriptionSettings
from fhir_server.subscriptions.store import OutboxEntry, SubscriptionRecord, ensure_indexes
from fhir_server.subscriptions.worker import DeliveryWorker

log = logging.getLogger(__name__)

LIVE_STATUSES = ("active", "error")  # error: still notified, and a success makes it active again
STALE_CLAIM = timedelta(hours=1)


@dataclass
class Delivery:
    """One HTTP request to make."""

    endpoint: str
    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    subscriber: Any = None  # the Principal the notification is for (audit)
    patients: list[str] = field(default_factory=list)


@dataclass
class Dropped:
    """No notification: the reason is logged, the entry removed (and audited when the policy refused)."""

    reason: str
    subscriber: Any = None
    patients: list[str] = field(default_factory=list)


class SubscriptionService:
    def __init__(self, repository, engine, policy, settings: SubscriptionSettings, clock=utcnow):
        self.repository = repository
        self.engine = engine
        self.policy = policy
        self.settings = settings
        self.clock = clock
        ensure_indexes(repository.db)
        self.records = collection(repository.db, SubscriptionRecord)
        self.outbox = collection(repository.db, OutboxEntry)
        self.worker = DeliveryWorker(self)
        self.audit = None  # the AuditTrail, wired by build_services: each notification is an access
        repository.write_listeners.append(self.on_written)

    # ------------------------------------------------------------------ writes of Subscriptions
    def before_write(self, ctx, rt: str, rid: str, resource: dict, current_doc: dict | None) -> dict:
        issues = check_status(resource) + check_channel(resource, self.settings.allow_loopback)
        criteria = None
        try:
            criteria = parse_criteria(resource.get("criteria"), ctx.base_url)
            compile_criteria(self.engine, criteria, ctx.base_url)
        except FhirError as err:
            issues += err.issues
        if issues:
            raise FhirError(422, issues[0].diagnostics, issues=issues)
        # the criteria are subject to the limits of the client that writes them
        ctx.access.require(criteria.resource_type, "search-type")
        resource = with_server_status(resource, (current_doc or {}).get("res"))
        self.claim(ctx.access.principal, rid, ctx.base_url)
        ctx.access.invalidate("Subscription")
        return resource

    def claim(self, principal, rid: str, base_url: str | None) -> None:
        """Record the writer as the owner (before the write, so that no subscription is ever
        stored without one). The owner's rights are refreshed on each of their writes; an id
        owned by someone else (a deleted subscription) cannot be taken over."""
        key = f"Subscription/{rid}"
        owner = snapshot(principal)
        try:
            self.records.insert_one(
                {"_id": key, "owner": owner, "base_url": base_url, "rt": None, "live": False, "claimed": self.clock()}
            )
            return
        except DuplicateKeyError:
            pass
        if principal.kind == "operator":
            return  # the operator may change any subscription; it stays its owner's
        changed = self.records.update_one(
            {"_id": key, "owner.key": owner["key"]}, {"$set": {"owner": owner, "base_url": base_url}}
        )
        if changed.matched_count == 0:
            raise FhirError(409, f"{key} is taken; create the subscription with another id.", "conflict")

    # ------------------------------------------------------------------ every write
    def on_written(self, doc: dict) -> None:
        """A version was written (and committed): queue a notification per matching subscription."""
        rt = doc.get("rt")
        if rt == "Subscription":
            self._route(doc)
            return
        if rt in NOT_NOTIFIED or doc.get("state") != "live":
            return  # deletions are not notified (R4: created or updated)
        patients = [c for c in doc.get("comp") or [] if c.startswith("Patient/")]
        routes: list[dict] = [{"any_patient": True}] + ([{"patients": {"$in": patients}}] if patients else [])
        query = {"rt": rt, "live": True, **(routes[0] if len(routes) == 1 else {"$or": routes})}
        queued = 0
        for record in list(self.records.find(query, {"_id": 1, "base_url": 1})):
            subscription = self.repository.current_doc("Subscription", record["_id"].split("/", 1)[1])
            if not self._active(subscription):
                continue
            if self._matches(subscription, record.get("base_url"), doc):
                queued += self._enqueue(record["_id"], doc)
        if queued:
            self.worker.wake()

    def _matches(self, subscription: dict, base_url: str | None, doc: dict) -> bool:
        try:
            criteria = parse_criteria(subscription["res"].get("criteria"), base_url)
            if criteria.resource_type != doc["rt"]:
                return False
            return filter_applies(compile_criteria(self.engine, criteria, base_url), doc)
        except FhirError as err:
            log.warning("%s: criteria no longer understood: %s", subscription["_id"], err.diagnostics)
            return False

    def _enqueue(self, sub_key: str, doc: dict) -> int:
        now = self.clock()
        entry = {
            "_id": f"{sub_key}|{doc['_id']}|{doc['vid']}", "sub": sub_key, "key": doc["_id"], "vid": doc["vid"],
            "state": "pending", "attempts": 0, "next_at": now, "created": now, "last_error": None,
        }
        try:
            self.outbox.insert_one(entry)
        except DuplicateKeyError:
            return 0  # already queued (a transaction rolled forward twice)
        return 1

    def _route(self, doc: dict) -> None:
        """Keep the routing copy of a Subscription in step with its resource."""
        record = self.records.find_one({"_id": doc["_id"]}, {"base_url": 1})
        if record is None:
            return  # written outside the API (no owner): never notified, deny by default
        res = doc.get("res") or {}
        try:
            criteria = parse_criteria(res.get("criteria"), record.get("base_url"))
        except FhirError:
            criteria = None
        patients = criteria_patients(criteria) if criteria else None
        self.records.update_one({"_id": doc["_id"]}, {"$set": {
            "rt": criteria.resource_type if criteria else None,
            "live": doc.get("state") == "live" and res.get("status") in LIVE_STATUSES,
            "patients": patients or [],
            "any_patient": patients is None,
        }})

    def rebuild(self) -> None:
        """At start-up: resynchronise routing copies (a crash between a write and its listener)
        and forget claims whose subscription was never written."""
        known = set()
        for doc in self.repository.find_docs({"rt": "Subscription"}, {"rt": 1, "state": 1, "res": 1}):
            known.add(doc["_id"])
            self._route(doc)
        cutoff = self.clock() - STALE_CLAIM
        for record in list(self.records.find({}, {"_id": 1, "claimed": 1})):
            if record["_id"] not in known and as_utc(record["claimed"]) < cutoff:
                self.records.delete_one({"_id": record["_id"], "claimed": record["claimed"]})

    # ------------------------------------------------------------------ delivery decisions
    def _active(self, subscription: dict | None) -> bool:
        if not subscription or subscription.get("state") != "live":
            return False
        res = subscription.get("res") or {}
        if res.get("status") not in LIVE_STATUSES:
            return False
        end = res.get("end")
        if end:
            from fhir_server.search.dates import DateFormatError, date_range

            try:
                if date_range(end)[1] < self.clock():
                    return False
            except DateFormatError:
                return False
        return True

    def prepare(self, entry: dict) -> Delivery | Dropped:
        """What to send for an outbox entry, decided now with the subscriber's rights."""
        subscription = self.repository.current_doc("Subscription", entry["sub"].split("/", 1)[1])
        if not self._active(subscription):
            return Dropped("the subscription is deleted, off or ended")
        record = self.records.find_one({"_id": entry["sub"]})
        if not record or not record.get("owner"):
            return Dropped("the subscription has no owner")
        rt, rid = entry["key"].split("/", 1)
        doc = self.repository.current_doc(rt, rid, with_index=True)
        if doc is None or doc["state"] != "live":
            return Dropped(f"{entry['key']} is deleted")
        if not self._matches(subscription, record.get("base_url"), doc):
            return Dropped(f"{entry['key']} no longer matches the criteria")
        subscriber = principal_of(record["owner"])
        patients = [c for c in doc.get("comp") or [] if c.startswith("Patient/")]
        if not self.policy.for_principal(subscriber).visible(doc, "r"):
            # deny: no notification at all, not even an empty one
            return Dropped(f"{entry['key']} is not visible to the subscriber", subscriber, patients)
        channel = subscription["res"]["channel"]
        endpoint = channel["endpoint"]
        headers = header_pairs(subscription["res"])
        if channel.get("payload") == FULL_RESOURCE:
            # R4: the resource is sent as an update, with the endpoint as the service base
            resource = self.repository._version_from_current(doc).resource
            headers.append(("Content-Type", FULL_RESOURCE))
            url = f"{endpoint.rstrip('/')}/{rt}/{rid}"
            return Delivery(endpoint, "PUT", url, headers, orjson.dumps(resource), subscriber, patients)
        # R4: with no payload, a POST with no body; the client searches for what changed
        return Delivery(endpoint, "POST", endpoint, headers, b"", subscriber, patients)

    def audit_notification(self, entry: dict, outcome: Delivery | Dropped) -> None:
        """A notification (sent, or withheld by the policy) is an access by its subscriber: one
        AuditEvent, in the patient's access history like any read."""
        if self.audit is None or outcome.subscriber is None:
            return
        from fhir_server.audit.events import rest_event

        if isinstance(outcome, Delivery):
            what = "the resource" if outcome.method == "PUT" else "an empty notification"
            status, description = 200, f"rest-hook {entry['sub']}: {what} sent to {outcome.endpoint}"
        else:
            status, description = 403, f"rest-hook {entry['sub']}: withheld, {outcome.reason}"
        event = rest_event(
            interaction="read", status=status, principal=outcome.subscriber, network_address=None,
            resources=[entry["key"]], patients=outcome.patients, description=description,
        )
        try:
            self.audit.record(event)
        except Exception:
            log.exception("%s: the notification could not be audited", entry["_id"])

    # ------------------------------------------------------------------ the subscription's status
    def set_status(self, sub_key: str, status: str, error: str | None = None) -> None:
        """`error` after a dead letter, back to `active` after a success; written through the
        repository, so the change is a new version of the Subscription."""
        rid = sub_key.split("/", 1)[1]
        for _ in range(5):
            try:
                version = self.repository.read("Subscription", rid)
            except FhirError:
                return  # deleted meanwhile
            current = version.resource or {}
            if current.get("status") not in LIVE_STATUSES:
                return  # turned off by its owner meanwhile
            if status == "active" and current.get("status") != "error":
                return
            new = dict(current)
            new["status"] = status
            if error:
                new["error"] = error
            else:
                new.pop("error", None)
            if new == current:
                return
            try:
                self.repository.update("Subscription", rid, new, version.vid)
                return
            except FhirError as err:
                if err.status not in (409, 412):
                    raise
        log.warning("%s: could not record status %s (concurrent updates)", sub_key, status)

    def dead_letters(self, sub_key: str | None = None) -> list[dict]:
        query = {"state": "dead"} if sub_key is None else {"sub": sub_key, "state": "dead"}
        return list(self.outbox.find(query))
