"""Tamper evidence: every AuditEvent carries a hash chained to the previous event of its chain.

Each writer (one per process) owns a chain: a random chain id, a sequence number and the hash of
its previous event. One writer per chain means no coordination between processes; a verifier
groups events by chain, orders them by sequence and reports the first broken link (a changed
event, a deleted event, a reordered one).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass

import orjson

CHAIN_EXTENSION = "https://github.com/dmp-fhir/StructureDefinition/audit-hash-chain"
GENESIS = "0" * 64


def canonical_hash(event: dict, previous: str) -> str:
    """SHA-256 of the event without its own chain extension and meta, linked to `previous`."""
    body = {k: v for k, v in event.items() if k not in ("meta", "extension")}
    body["extension"] = [e for e in event.get("extension", []) if e.get("url") != CHAIN_EXTENSION]
    payload = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(previous.encode("ascii") + payload).hexdigest()


def chain_info(event: dict) -> dict | None:
    for ext in event.get("extension", []):
        if ext.get("url") == CHAIN_EXTENSION:
            values = {}
            for sub in ext.get("extension", []):
                values[sub["url"]] = sub.get("valueString", sub.get("valueInteger"))
            return values
    return None


@dataclass
class ChainLink:
    chain: str
    seq: int
    previous: str
    hash: str

    def extension(self) -> dict:
        return {
            "url": CHAIN_EXTENSION,
            "extension": [
                {"url": "chain", "valueString": self.chain},
                {"url": "seq", "valueInteger": self.seq},
                {"url": "previous", "valueString": self.previous},
                {"url": "hash", "valueString": self.hash},
            ],
        }


class ChainWriter:
    """Appends links for one process; thread-safe."""

    def __init__(self) -> None:
        self.chain = uuid.uuid4().hex
        self._seq = 0
        self._previous = GENESIS
        self._lock = threading.Lock()

    def link(self, event: dict, write) -> ChainLink:
        """Chain `event`, then call `write(event)` under the lock so the order on disk is the chain order.

        When `write` raises, the chain does not advance (the event was not stored).
        """
        with self._lock:
            link = ChainLink(self.chain, self._seq + 1, self._previous, "")
            link.hash = canonical_hash(event, link.previous)
            event.setdefault("extension", []).append(link.extension())
            write(event)
            self._seq, self._previous = link.seq, link.hash
            return link


def verify(events_by_chain: dict[str, list[dict]]) -> list[str]:
    """Problems found, first broken link of each chain first; empty when every chain holds."""
    problems = []
    for chain, events in events_by_chain.items():
        events = sorted(events, key=lambda e: chain_info(e)["seq"])
        expected_previous = None
        expected_seq = None
        for event in events:
            info = chain_info(event)
            if expected_seq is not None and info["seq"] != expected_seq:
                problems.append(f"chain {chain}: event seq {expected_seq} is missing (next found: {info['seq']}, AuditEvent/{event.get('id')})")
                break
            if expected_previous is not None and info["previous"] != expected_previous:
                problems.append(f"chain {chain}: AuditEvent/{event.get('id')} (seq {info['seq']}) does not link to its predecessor")
                break
            if canonical_hash(event, info["previous"]) != info["hash"]:
                problems.append(f"chain {chain}: AuditEvent/{event.get('id')} (seq {info['seq']}) was altered")
                break
            expected_previous, expected_seq = info["hash"], info["seq"] + 1
    return problems
