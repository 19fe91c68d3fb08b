"""The delivery worker: takes due outbox entries, asks the service what may be sent, sends it.

One daemon thread per app (`start`, on when `SubscriptionSettings.worker`), woken by every write
that queues a notification and otherwise polling every `poll_seconds`; `run_once` and `drain`
do the same work synchronously (tests, tools). Several workers (threads or processes) can share
one outbox: an entry is leased by a conditional update before it is handled, and a lease left by
a dead worker expires.

Failures are retried with exponential backoff (`backoff_seconds`, doubled each time, capped by
`backoff_max_seconds`); after `max_attempts` the entry is dead-lettered (kept, state `dead`) and
the Subscription's status becomes `error` with the reason. A later successful delivery sets it
back to `active` and clears `error`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
from pymongo import ReturnDocument
from pymongo.errors import PyMongoError

from fhir_server.storage.repository import as_utc

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.subscriptions.service import Delivery, SubscriptionService

log = logging.getLogger(__name__)

USER_AGENT = "dmp-fhir-subscriptions"


class DeliveryError(Exception):
    """A failed attempt (retried)."""


class DeliveryWorker:
    def __init__(self, service: SubscriptionService):
        self.service = service
        self.settings = service.settings
        self.outbox = service.outbox
        self.id = uuid.uuid4().hex[:12]
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=4 * self.settings.timeout_seconds + 30)

    # ------------------------------------------------------------------ the thread
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dmp-subscriptions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.run_once()
            except PyMongoError as exc:  # the database is away: try again later, never die
                log.warning("subscription worker: database unavailable (%s)", type(exc).__name__)
                handled = 0
            except Exception:
                log.exception("subscription worker pass failed")
                handled = 0
            if handled:
                continue
            self._wake.wait(self._idle_seconds())
            self._wake.clear()

    def _idle_seconds(self) -> float:
        poll = self.settings.poll_seconds
        try:
            nxt = next(iter(self.outbox.find({"state": "pending"}, {"next_at": 1}).sort("next_at", 1).limit(1)), None)
        except PyMongoError:
            return poll
        if nxt is None:
            return poll
        due = (as_utc(nxt["next_at"]) - self.service.clock()).total_seconds()
        return min(poll, max(due, 0.01))

    # ------------------------------------------------------------------ one pass
    def run_once(self) -> int:
        """Handle the entries due now; returns how many were handled (delivered, dropped or failed)."""
        now = self.service.clock()
        self.outbox.update_many(
            {"state": "delivering", "lease_until": {"$lt": now}}, {"$set": {"state": "pending"}}
        )
        due = list(
            self.outbox.find({"state": "pending", "next_at": {"$lte": now}}, {"_id": 1})
            .sort("next_at", 1)
            .limit(self.settings.batch_size)
        )
        handled = 0
        for item in due:
            entry = self.outbox.find_one_and_update(
                {"_id": item["_id"], "state": "pending"},
                {"$set": {"state": "delivering", "lease_until": now + self.lease}},
                return_document=ReturnDocument.AFTER,
            )
            if entry is None:
                continue  # another worker has it
            self._handle(entry)
            handled += 1
        return handled

    def drain(self, timeout: float = 30) -> bool:
        """Run passes until no entry is pending (waiting out backoff delays); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.run_once()
            if not self.outbox.count_documents({"state": {"$in": ["pending", "delivering"]}}):
                return True
            time.sleep(min(self._idle_seconds(), 0.05))
        return False

    # ------------------------------------------------------------------ one entry
    def _handle(self, entry: dict) -> None:
        from fhir_server.subscriptions.service import Dropped

        try:
            delivery = self.service.prepare(entry)
        except Exception as exc:  # never send on an undecided access check: retry later
            log.exception("%s: cannot decide the delivery", entry["_id"])
            self._failed(entry, f"internal error: {exc}")
            return
        if isinstance(delivery, Dropped):
            log.info("%s: no notification: %s", entry["_id"], delivery.reason)
            self.service.audit_notification(entry, delivery)
            self.outbox.delete_one({"_id": entry["_id"]})
            return
        try:
            self.send(delivery)
        except DeliveryError as exc:
            log.warning("%s: delivery to %s failed: %s", entry["_id"], delivery.endpoint, exc)
            self._failed(entry, str(exc))
            return
        self.service.audit_notification(entry, delivery)
        self.outbox.delete_one({"_id": entry["_id"]})
        self.service.set_status(entry["sub"], "active")  # no-op unless it was in error

    def _failed(self, entry: dict, reason: str) -> None:
        attempts = entry.get("attempts", 0) + 1
        if attempts >= self.settings.max_attempts:
            self.outbox.update_one(
                {"_id": entry["_id"]},
                {"$set": {"state": "dead", "attempts": attempts, "last_error": reason}, "$unset": {"lease_until": ""}},
            )
            endpoint = self._endpoint_of(entry)
            self.service.set_status(entry["sub"], "error", f"delivery to {endpoint} failed {attempts} times: {reason}")
            return
        delay = min(self.settings.backoff_seconds * 2 ** (attempts - 1), self.settings.backoff_max_seconds)
        self.outbox.update_one(
            {"_id": entry["_id"]},
            {
                "$set": {"state": "pending", "attempts": attempts, "last_error": reason,
                         "next_at": self.service.clock() + timedelta(seconds=delay)},
                "$unset": {"lease_until": ""},
            },
        )

    def _endpoint_of(self, entry: dict) -> str:
        doc = self.service.repository.current_doc("Subscription", entry["sub"].split("/", 1)[1])
        return (((doc or {}).get("res") or {}).get("channel") or {}).get("endpoint") or "(no endpoint)"

    # ------------------------------------------------------------------ HTTP
    def send(self, delivery: Delivery) -> None:
        """One request, no redirects followed, short timeouts; 2xx is success."""
        if not self.settings.allow_loopback:
            self._refuse_loopback(delivery.url)
        headers = {"User-Agent": USER_AGENT}
        for name, value in delivery.headers:
            headers[name] = value
        try:
            with (
                httpx.Client(timeout=self.settings.timeout_seconds, follow_redirects=False, trust_env=False) as client,
                client.stream(delivery.method, delivery.url, content=delivery.body, headers=headers) as response,
            ):
                status = response.status_code  # the body is not read
        except httpx.TimeoutException:
            raise DeliveryError(f"no answer within {self.settings.timeout_seconds:g} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(_describe(exc)) from None
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise DeliveryError(f"HTTP {status} (redirects are not followed)")
        raise DeliveryError(f"HTTP {status}")

    @staticmethod
    def _refuse_loopback(url: str) -> None:
        import ipaddress

        parts = urlsplit(url)
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as exc:
            raise DeliveryError(f"cannot resolve {parts.hostname}: {exc}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address.is_loopback or address.is_unspecified:
                raise DeliveryError(f"{parts.hostname} resolves to a loopback address, which this server does not call")


def _describe(exc: Exception) -> str:
    text = str(exc).strip()
    if "refused" in text.lower():
        return "connection refused"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
