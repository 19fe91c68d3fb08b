#!/usr/bin/env python3
"""ITI-65 Provide Document Bundle benchmark: documents with their PDFs loaded through the API.

Each of ``--clients`` threads (one keep-alive ``httpx.Client`` each) posts PDSm Comprehensive
bundles of ``--per-bundle`` documents, each with a ``--size-kb`` PDF, for patients created first,
until ``--documents`` documents are stored (or ``--max-seconds`` pass). Every bundle goes through
the full server path: PDSm validation (value sets, type/class, size and SHA-1 against the bytes),
resubmission check, access policy, audit, all-or-nothing commit.

Reports documents/s (overall, and over the first and last tenth of the bundles, to show whether
the rate holds as the store grows), MB/s of document content, bundle latency p50/p95/p99 and
errors. With ``--reads N``, then runs N ITI-67 searches (a random patient's current documents)
each followed by the ITI-68 retrieval of one document's content, checked against its SHA-1, and
reports their latencies on the loaded store.

Usage::

    python scripts/bench_iti65.py --base http://127.0.0.1:8090/fhir --documents 10000 --clients 8 \\
        --backend-label "MongoDB 7" --json /tmp/iti65.json

Importable: ``main(argv) -> dict`` (the test suite runs it with a handful of documents).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import platform
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.fhir.nir import ins_identifier, make_nir  # noqa: E402
from fhir_server.fhir.provide_bundle import (  # noqa: E402
    DISCHARGE_LETTER, IMAGING_REPORT, LAB_REPORT, PATIENT_SUMMARY, Doc, pdf, provide_bundle,
)

HEADERS = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
KINDS = (DISCHARGE_LETTER, LAB_REPORT, IMAGING_REPORT, PATIENT_SUMMARY)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup(client: httpx.Client, base: str, patients: int) -> tuple[list[str], str]:
    author = client.post(f"{base}/Practitioner", headers=HEADERS, json={
        "resourceType": "Practitioner", "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": "10101010101"}],
        "name": [{"family": "Bench", "given": ["Iti"], "prefix": ["Dr"]}]})
    author.raise_for_status()
    refs = []
    for i in range(patients):
        nir = make_nir(1 + i % 2, 40 + i % 60, 1 + i % 12, "75", "056", f"{900 - i % 900:03d}")
        response = client.post(f"{base}/Patient", headers=HEADERS, json={
            "resourceType": "Patient", "identifier": [ins_identifier(nir)],
            "name": [{"family": f"Banc{i}", "given": ["Essai"]}], "gender": "male" if i % 2 == 0 else "female",
            "birthDate": "1970-01-01"})
        response.raise_for_status()
        refs.append(f"Patient/{response.json()['id']}")
    return refs, f"Practitioner/{author.json()['id']}"


def _rate(done_at: list[tuple[float, int]], started: float, first: bool) -> float:
    """Documents/s over the first (or last) tenth of the bundles, in completion order."""
    done_at = sorted(done_at)
    tenth = max(1, len(done_at) // 10)
    if len(done_at) < 2:
        return math.nan
    if first:
        span, docs = done_at[tenth - 1][0] - started, sum(n for _, n in done_at[:tenth])
    else:
        span, docs = done_at[-1][0] - done_at[-tenth - 1][0], sum(n for _, n in done_at[-tenth:])
    return round(docs / span, 2) if span > 0 else math.nan


def _reads(client: httpx.Client, base: str, patients: list[str], count: int) -> dict:
    """ITI-67 (a patient's current documents) then ITI-68 (one of them), `count` times."""
    rng = random.Random(65)
    searches, retrievals, errors = [], [], 0
    for _ in range(count):
        patient = rng.choice(patients)
        started = time.perf_counter()
        found = client.get(f"{base}/DocumentReference", params={"patient": patient, "status": "current", "_count": 20})
        searches.append(time.perf_counter() - started)
        documents = [e["resource"] for e in found.json().get("entry", [])
                     if e.get("resource", {}).get("resourceType") == "DocumentReference"] if found.status_code == 200 else []
        if not documents:
            errors += 1
            continue
        attachment = rng.choice(documents)["content"][0]["attachment"]
        url = attachment["url"] if attachment["url"].startswith("http") else f"{base}/{attachment['url']}"
        started = time.perf_counter()
        content = client.get(url, headers={"Accept": attachment.get("contentType", "*/*")})
        retrievals.append(time.perf_counter() - started)
        if content.status_code != 200 or base64.b64encode(hashlib.sha1(content.content).digest()).decode() != attachment.get("hash"):
            errors += 1
    return {
        "reads": count, "read_errors": errors,
        "iti67_p50_ms": round(_percentile(searches, 0.50) * 1000, 1),
        "iti67_p95_ms": round(_percentile(searches, 0.95) * 1000, 1),
        "iti68_p50_ms": round(_percentile(retrievals, 0.50) * 1000, 1),
        "iti68_p95_ms": round(_percentile(retrievals, 0.95) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--per-bundle", type=int, default=4)
    parser.add_argument("--size-kb", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=3600)
    parser.add_argument("--token", help="Bearer token (a system client with system/*.c scopes)")
    parser.add_argument("--reads", type=int, default=0, help="ITI-67 + ITI-68 reads after loading")
    parser.add_argument("--backend-label", default="")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    base = args.base.rstrip("/")
    headers = dict(HEADERS, **({"Authorization": f"Bearer {args.token}"} if args.token else {}))

    with httpx.Client(timeout=120, headers=headers) as client:
        patients, author = _setup(client, base, args.patients)
    # One 100 kB PDF per document kind, made unique per document by its title line: building
    # them is the client's cost, kept out of the timed loop.
    template = {i: pdf(f"Modèle {i}", size=args.size_kb * 1024) for i in range(len(KINDS))}
    bundles_needed = math.ceil(args.documents / args.per_bundle)
    lock = threading.Lock()
    state = {"next": 0, "docs": 0, "bytes": 0, "errors": 0, "latencies": [], "done_at": [], "first_error": None}
    deadline = time.monotonic() + args.max_seconds

    def worker() -> None:
        with httpx.Client(timeout=300, headers=headers) as client:
            while time.monotonic() < deadline:
                with lock:
                    n = state["next"]
                    if n >= bundles_needed:
                        return
                    state["next"] += 1
                docs = []
                for k in range(args.per_bundle):
                    kind = (n * args.per_bundle + k) % len(KINDS)
                    data = template[kind][:-40] + f"%doc {n}-{k}".ljust(39).encode() + b"\n"
                    docs.append(Doc(**KINDS[kind], data=data))
                bundle = provide_bundle(patients[n % len(patients)], author, *docs)
                started = time.perf_counter()
                response = client.post(base, content=json.dumps(bundle))
                elapsed = time.perf_counter() - started
                with lock:
                    state["latencies"].append(elapsed)
                    state["done_at"].append((time.perf_counter(), len(docs) if response.status_code == 200 else 0))
                    if response.status_code == 200:
                        state["docs"] += len(docs)
                        state["bytes"] += sum(len(d.bytes()) for d in docs)
                    else:
                        state["errors"] += 1
                        state["first_error"] = state["first_error"] or response.text[:500]

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        for future in [pool.submit(worker) for _ in range(args.clients)]:
            future.result()
    seconds = time.perf_counter() - started
    latencies = state["latencies"]
    result = {
        "benchmark": "iti65", "backend": args.backend_label, "machine": platform.platform(),
        "documents": state["docs"], "bundles": len(latencies), "per_bundle": args.per_bundle,
        "size_kb": args.size_kb, "clients": args.clients, "seconds": round(seconds, 2),
        "documents_per_s": round(state["docs"] / seconds, 2) if seconds else math.nan,
        "mb_per_s": round(state["bytes"] / 1e6 / seconds, 2) if seconds else math.nan,
        "bundle_p50_ms": round(_percentile(latencies, 0.50) * 1000, 1),
        "bundle_p95_ms": round(_percentile(latencies, 0.95) * 1000, 1),
        "bundle_p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
        "bundle_mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else math.nan,
        "documents_per_s_first_tenth": _rate(state["done_at"], started, first=True),
        "documents_per_s_last_tenth": _rate(state["done_at"], started, first=False),
        "errors": state["errors"], "first_error": state["first_error"],
        "complete": state["docs"] >= args.documents,
    }
    if args.reads:
        with httpx.Client(timeout=120, headers=headers) as client:
            result.update(_reads(client, base, patients, args.reads))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
