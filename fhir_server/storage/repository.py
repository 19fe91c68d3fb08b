"""The single door to storage: versions, history, optimistic locking and transactions.

Write protocol (works on MongoDB and on servers without multi-document transactions, such as
FerretDB):

* single write: insert the new version into `history` first; its `_id` ("Type/id/vid") is
  unique, so of two concurrent writers of the same next version exactly one gets in. The winner
  then moves `resources` forward with a filter on the version it read. A writer that died between
  the two steps leaves a history record ahead of `resources`; the next writer that collides with
  it rolls it forward (the record holds everything needed), so nothing is lost or stuck.
* transaction: every touched resource is locked (`txn` set with a filter on the version read;
  creates insert a `pending` placeholder). The commit point is one insert of the journal holding
  all new versions. Then versions are applied and the journal removed. At start-up (and when a
  writer meets a stale lock) `recover()` rolls committed journals forward and releases locks of
  transactions that died before their commit point, so a crash leaves all or nothing.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fhir_server.fhir.errors import conflict, gone, not_found, precondition_failed
from fhir_server.storage.binaries import BinaryStore
from fhir_server.storage.documents import (
    AuditRecord,
    ResourceVersion,
    StoredResource,
    TransactionJournal,
    collection,
)

log = logging.getLogger(__name__)

SEPARATE_TYPES = {"AuditEvent"}

Indexer = Callable[[dict], tuple[dict, list[str], dict]]
MAX_WRITE_ATTEMPTS = 20


def utcnow() -> datetime:
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)  # MongoDB keeps milliseconds


def new_id() -> str:
    return uuid.uuid4().hex


def fhir_instant(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def as_utc(ts: datetime) -> datetime:
    """Datetimes from the driver carry its own UTC tzinfo (or none): normalise to timezone.utc."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


@dataclass
class Version:
    """One version of a resource as the interaction layer sees it."""

    rt: str
    rid: str
    vid: int
    ts: datetime
    deleted: bool = False
    resource: dict | None = None
    method: str | None = None

    @property
    def key(self) -> str:
        return f"{self.rt}/{self.rid}"

    @property
    def etag(self) -> str:
        return f'W/"{self.vid}"'


@dataclass
class WriteOp:
    """One write of a transaction: `resource` None means delete; `expected_vid` 0 means 'must not exist'."""

    rt: str
    rid: str
    resource: dict | None
    method: str
    expected_vid: int | None = None
    # filled in while locking
    vid: int = 0
    ts: datetime | None = None
    created: bool = False
    previous_state: str | None = None
    # set by commit
    version: Version | None = None
    extra: dict = field(default_factory=dict)


class Repository:
    def __init__(
        self,
        db: Database,
        indexer: Indexer,
        binaries: BinaryStore,
        clock: Callable[[], datetime] = utcnow,
        ids: Callable[[], str] = new_id,
        lock_timeout: timedelta = timedelta(seconds=60),
    ):
        self.db = db
        self.resources = collection(db, StoredResource)
        # Audit events live apart: append-only, their own retention and growth, and they never
        # slow down the searches of clinical data.
        self.audit = collection(db, AuditRecord)
        self.history_coll = collection(db, ResourceVersion)
        self.journal = collection(db, TransactionJournal)
        self.indexer = indexer
        self.binaries = binaries
        self.clock = clock
        self.ids = ids
        self.lock_timeout = lock_timeout
        # Test hook: called with a step name during commit; raising there simulates a crash.
        self.fault_point: Callable[[str], None] = lambda step: None
        # Called with the stored document of every version once it is written (a transaction's
        # after its commit): subscriptions queue their notifications here. A listener's failure
        # is logged and never undoes or fails the write.
        self.write_listeners: list[Callable[[dict], None]] = []

    def coll(self, rt: str):
        """The collection holding resources of this type."""
        return self.audit if rt in SEPARATE_TYPES else self.resources

    def coll_for_query(self, query: dict):
        """The collection a query is about: AuditEvent queries name their type at the top level."""
        rt = query.get("rt")
        if isinstance(rt, str):
            return self.coll(rt)
        if isinstance(rt, dict) and set(rt.get("$in", ())) <= SEPARATE_TYPES and rt.get("$in"):
            return self.audit
        ids = query.get("_id", {}).get("$in") if isinstance(query.get("_id"), dict) else None
        if ids and all(str(i).split("/")[0] in SEPARATE_TYPES for i in ids):
            return self.audit
        for part in query.get("$and", ()):
            if isinstance(part, dict) and ("rt" in part or "_id" in part):
                return self.coll_for_query(part)
        return self.resources

    # ------------------------------------------------------------------ reads
    def current_doc(self, rt: str, rid: str, with_index: bool = False) -> dict | None:
        """The stored document of the current version (with its index keys for policy checks)."""
        return self.coll(rt).find_one({"_id": f"{rt}/{rid}"}, None if with_index else {"ix": 0, "sk": 0})

    def read(self, rt: str, rid: str) -> Version:
        return self.current_version(self.current_doc(rt, rid), f"{rt}/{rid}")

    def current_version(self, doc: dict | None, key: str, content: bool = True) -> Version:
        """The version in a current document: 404 if there is none, 410 if deleted. Without
        `content`, a Binary's blob is left unread (`raw_binary` gives its bytes)."""
        if doc is None or doc["state"] == "pending":
            raise not_found(f"{key} is not known.")
        if doc["state"] == "deleted":
            raise gone(f"{key} was deleted (version {doc['vid']}).")
        return self._version_from_current(doc, content)

    def vread(self, rt: str, rid: str, vid: int) -> Version:
        current = self.current_doc(rt, rid)
        rec = self.history_coll.find_one({"_id": f"{rt}/{rid}/{vid}"})
        if rec is None and current is not None and current["vid"] == vid and current["state"] == "live":
            return self._version_from_current(current)  # immutable resources keep no history record
        if rec is None or current is None or current["state"] == "pending" or vid > current["vid"]:
            raise not_found(f"{rt}/{rid} has no version {vid}.")
        version = self._version_from_history(rec)
        if version.deleted:
            raise gone(f"Version {vid} of {rt}/{rid} is a deletion.")
        return version

    def find(
        self,
        query: dict,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
        projection: dict | None = None,
    ) -> Iterator[Version]:
        cursor = self.coll_for_query(query).find(flat_conjunction(query), projection or {"ix": 0, "sk": 0})
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        for doc in cursor:
            yield self._version_from_current(doc)

    def find_docs(self, query: dict, projection: dict | None = None, sort=None, limit: int = 0) -> Iterator[dict]:
        cursor = self.coll_for_query(query).find(flat_conjunction(query), projection)
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        return iter(cursor)

    def count(self, query: dict) -> int:
        return self.coll_for_query(query).count_documents(flat_conjunction(query))

    def instance_history(self, rt: str, rid: str) -> list[Version]:
        current = self.current_doc(rt, rid)
        if current is None or current["state"] == "pending":
            raise not_found(f"{rt}/{rid} is not known.")
        recs = self.history_coll.find({"key": f"{rt}/{rid}", "vid": {"$lte": current["vid"]}}).sort("vid", -1)
        versions = [self._version_from_history(r) for r in recs]
        if not versions and current["state"] == "live":
            versions = [self._version_from_current(current)]  # immutable resources keep no history record
        return versions

    def history(self, query: dict, limit: int) -> list[Version]:
        """Type or system history, newest first; `query` filters the history collection."""
        recs = self.history_coll.find(query).sort([("ts", -1), ("_id", -1)]).limit(limit)
        return [self._version_from_history(r) for r in recs]

    def count_history(self, query: dict) -> int:
        return self.history_coll.count_documents(query)

    def raw_binary(self, doc: dict) -> bytes:
        """The bytes of the Binary in a current document."""
        return self.binaries.raw_bytes(doc.get("res") or {})

    def append_immutable(self, rt: str, rid: str, resource: dict) -> Version:
        """Store a resource that is never updated (AuditEvent): one insert, no history record
        (its only version is the current one, which vread and _history fall back to)."""
        ts = self.clock()
        stored = self._stored_resource(rt, rid, resource, 1, ts)
        fields = self._current_fields(rt, rid, 1, ts, stored, "live", rid)
        self.coll(rt).insert_one({"_id": f"{rt}/{rid}", **fields, "cts": ts})
        return Version(rt, rid, 1, ts, False, stored, "POST")

    # ------------------------------------------------------------------ single writes
    def create(self, resource: dict, rid: str | None = None, method: str = "POST") -> Version:
        rt = resource["resourceType"]
        rid = rid or self.ids()
        version, _ = self._write(rt, rid, resource, method, if_match=None, must_be_new=True)
        return version

    def update(
        self, rt: str, rid: str, resource: dict, if_match: int | None = None, method: str = "PUT"
    ) -> tuple[Version, bool]:
        """Write a new version; returns (version, created)."""
        return self._write(rt, rid, resource, method, if_match=if_match)

    def delete(self, rt: str, rid: str, if_match: int | None = None) -> Version | None:
        """Delete (a tombstone version). None when the resource was already deleted."""
        doc = self.current_doc(rt, rid)
        if doc is None or doc["state"] == "pending":
            raise not_found(f"{rt}/{rid} is not known.")
        if doc["state"] == "deleted" and if_match is None:
            return None
        version, _ = self._write(rt, rid, None, "DELETE", if_match=if_match)
        return version

    def _write(
        self,
        rt: str,
        rid: str,
        resource: dict | None,
        method: str,
        if_match: int | None,
        must_be_new: bool = False,
    ) -> tuple[Version, bool]:
        key = f"{rt}/{rid}"
        coll = self.coll(rt)
        for _ in range(MAX_WRITE_ATTEMPTS):
            doc = coll.find_one({"_id": key}, {"vid": 1, "state": 1, "txn": 1, "txn_at": 1})
            if doc is not None and doc.get("txn"):
                self._wait_or_break_lock(doc)
                continue
            if doc is None or doc["state"] == "pending":
                if resource is None:
                    raise not_found(f"{key} is not known.")
                if if_match is not None:
                    raise precondition_failed(f"{key} does not exist; If-Match cannot hold.")
                previous_vid = 0
            else:
                if must_be_new:
                    raise conflict(f"{key} already exists.")
                previous_vid = doc["vid"]
                if if_match is not None and if_match != previous_vid:
                    raise precondition_failed(
                        f"{key} is at version {previous_vid}, not {if_match} (If-Match): reload and retry."
                    )
            vid = previous_vid + 1
            ts = self.clock()
            wid = self.ids()
            stored = self._stored_resource(rt, rid, resource, vid, ts)
            try:
                self.history_coll.insert_one(self._history_doc(rt, rid, vid, ts, stored, method, wid))
            except DuplicateKeyError:
                # Another writer got version `vid` first (or died after writing it): finish its
                # write for it, then decide again with the new current version.
                self._roll_forward(rt, rid, vid)
                if if_match is not None:
                    raise precondition_failed(f"{key} was modified concurrently (If-Match {if_match}).")
                continue
            state = "deleted" if resource is None else "live"
            new_fields = self._current_fields(rt, rid, vid, ts, stored, state, wid)
            if previous_vid == 0 and doc is None:
                try:
                    coll.insert_one({"_id": key, **new_fields, "cts": ts})
                except DuplicateKeyError:
                    self.history_coll.delete_one({"_id": f"{key}/{vid}", "wid": wid})
                    if must_be_new:
                        raise conflict(f"{key} already exists.") from None
                    continue
            else:
                filt: dict[str, Any] = {"_id": key, "vid": doc["vid"], "txn": None}
                if doc["state"] == "pending":
                    filt["state"] = "pending"
                result = coll.update_one(filt, {"$set": new_fields, "$unset": {"txn_at": ""}})
                if result.matched_count == 0:
                    now = coll.find_one({"_id": key}, {"vid": 1, "wid": 1})
                    if not (now and now["vid"] == vid and now.get("wid") == wid):
                        self.history_coll.delete_one({"_id": f"{key}/{vid}", "wid": wid})
                        if if_match is not None:
                            raise precondition_failed(f"{key} was modified concurrently (If-Match {if_match}).")
                        continue
            created = previous_vid == 0 or (doc is not None and doc["state"] == "deleted")
            self._written([{"_id": key, **new_fields}])
            return Version(rt, rid, vid, ts, resource is None, self._written_form(stored, resource), method), created
        raise conflict(f"{key} is under heavy concurrent modification; retry later.")

    def _roll_forward(self, rt: str, rid: str, vid: int) -> None:
        rec = self.history_coll.find_one({"_id": f"{rt}/{rid}/{vid}"})
        if rec is None:
            return
        fields = self._current_fields(
            rt, rid, vid, as_utc(rec["ts"]), rec.get("res"), "deleted" if rec.get("deleted") else "live", rec["wid"]
        )
        coll = self.coll(rt)
        coll.update_one(
            {"_id": f"{rt}/{rid}", "vid": vid - 1, "txn": None}, {"$set": fields}, upsert=False
        )
        if vid == 1:
            try:
                coll.insert_one({"_id": f"{rt}/{rid}", **fields, "cts": fields["ts"]})
            except DuplicateKeyError:
                pass

    # ------------------------------------------------------------------ transactions
    def commit(self, ops: list[WriteOp]) -> list[Version]:
        """Apply all writes or none (see the module docstring for the protocol)."""
        txid = "txn-" + self.ids()
        locked: list[WriteOp] = []
        try:
            for op in sorted(ops, key=lambda o: (o.rt, o.rid)):
                self._lock(op, txid)
                locked.append(op)
            self.fault_point("locked")
            journal_ops = []
            for op in ops:
                op.ts = self.clock()
                stored = self._stored_resource(op.rt, op.rid, op.resource, op.vid, op.ts)
                op.extra["stored"] = stored
                journal_ops.append(
                    {
                        "rt": op.rt,
                        "rid": op.rid,
                        "vid": op.vid,
                        "ts": op.ts,
                        "method": op.method,
                        "deleted": op.resource is None,
                        "res": stored,
                    }
                )
            self.journal.insert_one(
                {"_id": txid, "state": "committed", "created": self.clock(), "ops": journal_ops}
            )
        except SimulatedCrash:
            raise
        except BaseException:
            self._release(txid)
            raise
        # Past the commit point: what follows is idempotent and finished by recover() after a crash.
        self.fault_point("committed")
        self._apply_journal(txid, journal_ops)
        for op in ops:
            public = self._written_form(op.extra["stored"], op.resource)
            op.version = Version(op.rt, op.rid, op.vid, op.ts, op.resource is None, public, op.method)
        return [op.version for op in ops]

    def _lock(self, op: WriteOp, txid: str) -> None:
        key = f"{op.rt}/{op.rid}"
        coll = self.coll(op.rt)
        for _ in range(MAX_WRITE_ATTEMPTS):
            doc = coll.find_one({"_id": key}, {"vid": 1, "state": 1, "txn": 1, "txn_at": 1})
            if doc is not None and doc.get("txn"):
                if doc["txn"] == txid:
                    raise conflict(f"{key} is written twice in one transaction.")
                self._wait_or_break_lock(doc)
                continue
            exists = doc is not None and doc["state"] == "live"
            if op.expected_vid == 0 and exists:
                raise precondition_failed(f"{key} already exists.")
            if op.expected_vid and (not exists or doc["vid"] != op.expected_vid):
                raise precondition_failed(f"{key} is not at version {op.expected_vid} (If-Match).")
            if op.resource is None and not exists:
                raise not_found(f"{key} is not known.")
            now = self.clock()
            if doc is None:
                try:
                    coll.insert_one(
                        {
                            "_id": key, "rt": op.rt, "rid": op.rid, "vid": 0, "ts": now, "state": "pending",
                            "res": None, "ix": {}, "comp": [], "sk": {}, "txn": txid, "txn_at": now,
                        }
                    )
                except DuplicateKeyError:
                    continue
                op.vid, op.created, op.previous_state = 1, True, "pending"
                return
            res = coll.update_one(
                {"_id": key, "vid": doc["vid"], "txn": None}, {"$set": {"txn": txid, "txn_at": now}}
            )
            if res.matched_count:
                op.vid = doc["vid"] + 1
                op.created = doc["state"] != "live"
                op.previous_state = doc["state"]
                return
        raise conflict(f"{key} is under heavy concurrent modification; retry later.")

    def _wait_or_break_lock(self, doc: dict) -> None:
        held_since = doc.get("txn_at")
        if held_since is None or self.clock() - as_utc(held_since) > self.lock_timeout:
            self.recover()
            return
        raise conflict(f"{doc['_id']} is being written by a transaction; retry shortly.")

    def _apply_journal(self, txid: str, journal_ops: list[dict]) -> None:
        written = []
        for op in journal_ops:
            rt, rid, vid = op["rt"], op["rid"], op["vid"]
            hist = self._history_doc(rt, rid, vid, op["ts"], op["res"], op["method"], txid)
            self.history_coll.replace_one({"_id": hist["_id"]}, hist, upsert=True)
            fields = self._current_fields(
                rt, rid, vid, op["ts"], op["res"], "deleted" if op["deleted"] else "live", txid
            )
            del fields["txn"]  # released by the $unset below
            if op["vid"] == 1:
                fields["cts"] = op["ts"]
            self.coll(rt).update_one(
                {"_id": f"{rt}/{rid}", "txn": txid}, {"$set": fields, "$unset": {"txn": "", "txn_at": ""}}
            )
            written.append({"_id": f"{rt}/{rid}", **fields})
            self.fault_point("applied-one")
        self.journal.delete_one({"_id": txid})
        self._written(written)

    def _written(self, docs: list[dict]) -> None:
        for listener in self.write_listeners:
            for doc in docs:
                try:
                    listener(doc)
                except Exception:
                    log.exception("write listener failed on %s", doc.get("_id"))

    def _release(self, txid: str) -> None:
        for coll in (self.resources, self.audit):
            coll.delete_many({"txn": txid, "state": "pending"})
            coll.update_many({"txn": txid}, {"$unset": {"txn": "", "txn_at": ""}})

    def recover(self) -> dict:
        """Finish committed transactions and release locks of dead ones. Safe to run any time."""
        rolled_forward = 0
        for journal in list(self.journal.find({})):
            ops = [{**op, "ts": as_utc(op["ts"])} for op in journal["ops"]]
            self._apply_journal(journal["_id"], ops)
            rolled_forward += 1
        cutoff = self.clock() - self.lock_timeout
        stale = {
            d["txn"]
            for coll in (self.resources, self.audit)
            for d in coll.find({"txn": {"$ne": None}, "txn_at": {"$lt": cutoff}}, {"txn": 1})
        }
        for txid in stale:
            if self.journal.find_one({"_id": txid}) is None:
                self._release(txid)
        return {"rolled_forward": rolled_forward, "rolled_back": len(stale)}

    # ------------------------------------------------------------------ helpers
    def _stored_resource(self, rt: str, rid: str, resource: dict | None, vid: int, ts: datetime) -> dict | None:
        if resource is None:
            return None
        stored = copy.deepcopy(resource)
        stored["id"] = rid
        meta = dict(stored.get("meta") or {})
        meta["versionId"] = str(vid)
        meta["lastUpdated"] = fhir_instant(ts)
        stored["meta"] = meta
        # Keep the element order readable: resourceType, id, meta first.
        ordered = {"resourceType": rt, "id": rid, "meta": meta}
        ordered.update((k, v) for k, v in stored.items() if k not in ordered)
        return self.binaries.externalise(ordered)

    def _current_fields(
        self, rt: str, rid: str, vid: int, ts: datetime, stored: dict | None, state: str, wid: str
    ) -> dict:
        if stored is not None:
            index, comp, sort_keys = self.indexer(stored)
        else:
            index, comp, sort_keys = {}, [], {}
        return {
            "rt": rt, "rid": rid, "vid": vid, "ts": ts, "state": state,
            "res": stored, "ix": index, "comp": comp, "sk": sort_keys, "wid": wid, "txn": None,
        }

    @staticmethod
    def _history_doc(rt, rid, vid, ts, stored, method, wid) -> dict:
        return {
            "_id": f"{rt}/{rid}/{vid}", "key": f"{rt}/{rid}", "rt": rt, "rid": rid, "vid": vid, "ts": ts,
            "deleted": stored is None, "method": method, "res": stored, "wid": wid,
        }

    def _public(self, stored: dict | None) -> dict | None:
        return None if stored is None else self.binaries.internalise(stored)

    def _written_form(self, stored: dict | None, resource: dict | None) -> dict | None:
        """The public form of a version just written: its content is still at hand, not read back."""
        if stored is None or resource is None:
            return None
        return self.binaries.internalise(stored, resource.get("data"))

    def _version_from_current(self, doc: dict, content: bool = True) -> Version:
        return Version(
            doc["rt"], doc["rid"], doc["vid"], as_utc(doc["ts"]), doc["state"] == "deleted",
            self._public(doc.get("res")) if content else doc.get("res"),
        )

    def _version_from_history(self, rec: dict) -> Version:
        return Version(
            rec["rt"], rec["rid"], rec["vid"], as_utc(rec["ts"]), bool(rec.get("deleted")),
            self._public(rec.get("res")), rec.get("method"),
        )


def flat_conjunction(query: dict) -> dict:
    """The same query with its `$and` equalities lifted to the top level (`{f: {$in: [v]}}` read
    as `{f: v}`). MongoDB plans both forms alike; FerretDB pushes down only top-level equalities,
    so only this form reaches PostgreSQL's indexes instead of a scan of the collection."""
    conjuncts = query.get("$and")
    if not isinstance(conjuncts, list):
        return query
    flat = {k: v for k, v in query.items() if k != "$and"}
    rest = []
    for part in conjuncts:
        equality = _single_equality(part)
        if equality and equality[0] not in flat:
            flat[equality[0]] = equality[1]
        else:
            rest.append(part)
    if rest:
        flat["$and"] = rest
    return flat


def _single_equality(part) -> tuple[str, Any] | None:
    if not isinstance(part, dict) or len(part) != 1:
        return None
    (field_name, condition), = part.items()
    if field_name.startswith("$"):
        return None
    if isinstance(condition, (str, int, bool)):
        return field_name, condition
    if isinstance(condition, dict) and list(condition) == ["$in"] and isinstance(condition["$in"], list):
        values = condition["$in"]
        if len(values) == 1 and isinstance(values[0], (str, int, bool)):
            return field_name, values[0]
    return None


class SimulatedCrash(BaseException):
    """Raised by tests through `fault_point` to stop a commit as a dying process would."""


