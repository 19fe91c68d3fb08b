#!/usr/bin/env python3
"""CRUD throughput and latency benchmark for the DMP FHIR server, over real HTTP.

Phases, each run by ``--clients`` worker threads that hold one keep-alive ``httpx.Client`` each:

(a) ``create``: ``POST {base}/Patient`` of valid French patients (INS-NIR with a valid key, from
    :func:`fhir_server.fhir.nir.make_nir`), for ``--duration`` seconds;
(b) ``read``: ``GET {base}/Patient/{id}`` of random ids taken from the created set, for
    ``--duration`` seconds;
(c) ``transaction``: ``POST {base}`` of 100-entry transaction Bundles (100 new Patients), for
    ``--tx-iterations`` bundles (bounded by ``--tx-max-seconds``).

Per phase: operations/s, p50/p95/p99 latency (ms), errors (non-2xx responses, plus transport
exceptions counted apart). The load generator runs on the same machine as the server: its own CPU
use is reported (``client_cpu``), and the server's too when ``--server-pid`` is given, so that a
client-bound run is visible.

Usage::

    python scripts/bench_crud.py --base http://127.0.0.1:8090/fhir --clients 16 --duration 10 \
        --backend-label "FerretDB 1.24 / SQLite" --json /tmp/crud.json

Importable: ``main(argv) -> dict`` runs the benchmark and returns the results (the test suite
uses it with a very short duration).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from fhir_server.fhir.nir import make_nir

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
FR_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FHIR_JSON = "application/fhir+json"
HEADERS = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
MAX_OPS_PER_PHASE = 2_000_000  # a hard bound on top of the time bound

FAMILIES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Lefèvre",
    "Moreau",
    "Girard",
    "Mercier",
    "Guérin",
    "Hébert",
    "Lebœuf",
    "Côté",
    "Santoni",
    "Paoli",
    "Hoarau",
    "Payet",
    "Le Gall",
    "Ménard",
    "Aubé",
)
MALE = ("François", "Jérôme", "Stéphane", "Loïc", "Gaël", "Noël", "Raphaël", "Théo", "Éric", "Hervé")
FEMALE = ("Hélène", "Élodie", "Cécile", "Gaëlle", "Anaïs", "Chloé", "Léa", "Zoé", "Maëlle", "Noémie")
# (department, commune, city, postal code) of birth / residence; Corsica and overseas included.
PLACES = (
    ("75", "056", "Paris", "75015"),
    ("13", "055", "Marseille", "13005"),
    ("69", "123", "Lyon", "69003"),
    ("33", "063", "Bordeaux", "33000"),
    ("59", "350", "Lille", "59000"),
    ("2A", "004", "Ajaccio", "20000"),
    ("2B", "033", "Bastia", "20200"),
    ("44", "109", "Nantes", "44000"),
    ("67", "482", "Strasbourg", "67000"),
)


# ------------------------------------------------------------------------------ data
class PatientFactory:
    """Valid, unique French patients (INS-NIR with its key), thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._next = self._rng.randrange(10**6)  # a per-run offset: repeated runs get other NIRs
        self._ipp_system = f"urn:oid:1.2.250.1.999.{self._rng.randrange(10**6)}"  # a fictitious IPP domain

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            k = self._next
            self._next += 1
            rng = random.Random(k)
        rank = k % 999 + 1
        k //= 999
        month = k % 12 + 1
        k //= 12
        year = 1930 + k % 90
        k //= 90
        dept, commune, city, postal = PLACES[k % len(PLACES)]
        sex = 1 + rng.randrange(2)
        nir = make_nir(sex, year, month, dept, commune, rank)
        given = rng.choice(MALE if sex == 1 else FEMALE)
        return {
            "resourceType": "Patient",
            "identifier": [
                {
                    "use": "official",
                    "type": {"coding": [{"system": FR_V2_0203, "code": "INS-NIR"}]},
                    "system": INS_NIR,
                    "value": nir,
                },
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2_0203, "code": "PI"}]},
                    "system": self._ipp_system,
                    "value": f"{rng.randrange(10**7, 10**8)}",
                },
            ],
            "active": True,
            "name": [{"use": "official", "family": rng.choice(FAMILIES), "given": [given]}],
            "gender": "male" if sex == 1 else "female",
            "birthDate": f"{year:04d}-{month:02d}-{rng.randint(1, 28):02d}",
            "address": [
                {
                    "use": "home",
                    "line": [f"{rng.randint(1, 120)} rue de la République"],
                    "city": city,
                    "postalCode": postal,
                    "country": "FRA",
                }
            ],
        }


def transaction_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


# ------------------------------------------------------------------------------ measurement
def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100) of an already sorted sequence; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class PhaseResult:
    name: str
    ops: int = 0
    seconds: float = 0.0
    errors: int = 0  # non-2xx responses
    exceptions: int = 0  # transport errors, timeouts
    ops_per_s: float = 0.0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    max_ms: float = float("nan")
    resources_per_s: float | None = None  # transaction phase: resources written per second
    client_cpu: float = 0.0  # load generator CPU seconds / wall seconds (1.0 = one core)
    server_cpu: float | None = None  # same for --server-pid
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Per-phase latencies and outcomes, shared by the worker threads."""

    def __init__(self, name: str) -> None:
        self.result = PhaseResult(name)
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def record(self, seconds: float, status: int | None, detail: str = "") -> None:
        with self._lock:
            self.latencies.append(seconds)
            key = str(status) if status is not None else "exception"
            self.result.status_counts[key] = self.result.status_counts.get(key, 0) + 1
            if status is None:
                self.result.exceptions += 1
            elif not 200 <= status < 300:
                self.result.errors += 1
            if (status is None or not 200 <= status < 300) and len(self.result.error_samples) < 5:
                self.result.error_samples.append(f"{key}: {detail[:300]}")

    def finish(self, seconds: float, units_per_op: int | None = None) -> PhaseResult:
        r = self.result
        lat = sorted(self.latencies)
        r.ops = len(lat)
        r.seconds = seconds
        r.ops_per_s = r.ops / seconds if seconds else 0.0
        if lat:
            r.p50_ms, r.p95_ms, r.p99_ms = (percentile(lat, p) * 1000 for p in (50, 95, 99))
            r.mean_ms = statistics.fmean(lat) * 1000
            r.max_ms = lat[-1] * 1000
        if units_per_op:
            r.resources_per_s = r.ops_per_s * units_per_op
        return r


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc; None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def make_clients(n: int, timeout: float) -> list[httpx.Client]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [httpx.Client(headers=HEADERS, timeout=timeout, limits=limits) for _ in range(n)]


def run_phase(
    name: str,
    clients: list[httpx.Client],
    op: Callable[[httpx.Client, int], tuple[int | None, str]],
    *,
    duration: float | None = None,
    iterations: int | None = None,
    max_seconds: float = 600.0,
    units_per_op: int | None = None,
    server_pid: int | None = None,
) -> PhaseResult:
    """Run ``op(client, i)`` from ``len(clients)`` threads until ``duration`` seconds have passed or
    ``iterations`` operations were started (whichever is given), never longer than ``max_seconds``.

    ``op`` returns ``(status, detail)``; it is timed here, wall clock, around the whole call.
    """
    rec = Recorder(name)
    counter = iter(range(iterations if iterations is not None else MAX_OPS_PER_PHASE))
    counter_lock = threading.Lock()
    started = time.perf_counter()
    stop_at = started + min(duration if duration is not None else max_seconds, max_seconds)

    def worker(client: httpx.Client) -> None:
        while time.perf_counter() < stop_at:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                status, detail = op(client, i)
            except httpx.HTTPError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
            rec.record(time.perf_counter() - t0, status, detail)

    cpu0 = time.process_time()
    srv0 = process_cpu_seconds(server_pid) if server_pid else None
    with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix=f"bench-{name}") as pool:
        for fut in [pool.submit(worker, c) for c in clients]:
            fut.result()
    wall = time.perf_counter() - started
    result = rec.finish(wall, units_per_op)
    result.client_cpu = (time.process_time() - cpu0) / wall if wall else 0.0
    srv1 = process_cpu_seconds(server_pid) if server_pid else None
    if srv0 is not None and srv1 is not None and wall:
        result.server_cpu = (srv1 - srv0) / wall
    return result


# ------------------------------------------------------------------------------ environment
def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def server_info(base: str, timeout: float = 10.0) -> dict[str, Any]:
    """What ``GET {base}/metadata`` says about the software (nothing else is asked)."""
    try:
        r = httpx.get(f"{base}/metadata", headers={"Accept": FHIR_JSON}, timeout=timeout)
        cap = r.json()
        software = cap.get("software", {})
        return {
            "status": r.status_code,
            "software": f"{software.get('name', '?')} {software.get('version', '')}".strip(),
            "fhirVersion": cap.get("fhirVersion"),
            "server_header": r.headers.get("server"),
        }
    except (httpx.HTTPError, ValueError) as exc:
        return {"status": None, "error": f"{type(exc).__name__}: {exc}"}


def print_header(
    console: Any, title: str, machine: dict, server: dict, label: str | None, args: dict
) -> None:
    lines = [
        f"[bold]{title}[/]",
        (
            f"machine: {machine['nproc']} CPU(s), {machine['cpu_model']}; "
            f"Python {machine['python']}; {machine['date']}"
        ),
        (
            f"server:  {server.get('software', server.get('error'))} (FHIR {server.get('fhirVersion')}), "
            f"backend: {label or 'unlabelled (use --backend-label)'}"
        ),
        "run:     " + ", ".join(f"{k}={v}" for k, v in args.items()),
    ]
    for line in lines:
        console.print(line)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def print_table(console: Any, title: str, rows: list[PhaseResult], rich_ok: bool) -> None:
    headers = [
        "phase",
        "ops",
        "ops/s",
        "res/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "client CPU",
        "server CPU",
    ]
    body = [
        [
            r.name,
            str(r.ops),
            _fmt(r.ops_per_s),
            _fmt(r.resources_per_s, 0) if r.resources_per_s is not None else "-",
            _fmt(r.p50_ms),
            _fmt(r.p95_ms),
            _fmt(r.p99_ms),
            _fmt(r.max_ms),
            f"{r.errors}" + (f" (+{r.exceptions} exc)" if r.exceptions else ""),
            f"{r.client_cpu:.2f}",
            _fmt(r.server_cpu, 2),
        ]
        for r in rows
    ]
    if rich_ok:
        from rich.table import Table

        table = Table(title=title)
        for h in headers:
            table.add_column(h, justify="left" if h == "phase" else "right")
        for row in body:
            table.add_row(*row)
        console.print(table)
    else:
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(headers)]
        print(title)
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths)))
        for row in body:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    for r in rows:
        for sample in r.error_samples:
            console.print(f"  [red]{r.name} error[/] {sample}", markup=rich_ok, highlight=False)


class PlainConsole:
    def print(self, text: Any = "", **_: Any) -> None:
        import re

        print(re.sub(r"\[/?[a-z ]*\]", "", str(text)))


def get_console(use_rich: bool = True) -> tuple[Any, bool]:
    if use_rich:
        try:
            from rich.console import Console

            # Not a terminal (a log file, a pipe): wide enough for the tables.
            return (Console() if sys.stdout.isatty() else Console(width=150)), True
        except ImportError:
            pass
    return PlainConsole(), False


# ------------------------------------------------------------------------------ main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="CRUD benchmark (create, read by id, 100-entry transactions).")
    p.add_argument("--base", default="http://127.0.0.1:8090/fhir", help="FHIR base URL")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (threads), default 16")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per timed phase (create, read)")
    p.add_argument("--tx-iterations", type=int, default=30, help="100-entry transaction bundles to post")
    p.add_argument("--tx-size", type=int, default=100, help="entries per transaction bundle")
    p.add_argument("--tx-max-seconds", type=float, default=120.0, help="time bound of the transaction phase")
    p.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout per request, seconds")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests before each phase")
    p.add_argument(
        "--backend-label", default=None, help='label for the storage, e.g. "FerretDB 1.24 / SQLite"'
    )
    p.add_argument("--server-pid", type=int, default=None, help="report this process's CPU use per phase")
    p.add_argument("--phases", default="create,read,transaction", help="comma-separated subset to run")
    p.add_argument("--seed", type=int, default=None, help="seed of the patient factory (default: random)")
    p.add_argument("--json", dest="json_out", default=None, help="write the results as JSON to this file")
    p.add_argument("--no-rich", action="store_true", help="plain text output")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.tx_iterations < 0 or args.tx_size < 1:
        _parser().error("--clients >= 1, --duration > 0, --tx-iterations >= 0, --tx-size >= 1")
    base = args.base.rstrip("/")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    console, rich_ok = get_console(not args.no_rich)
    machine = machine_info()
    server = server_info(base)
    print_header(
        console,
        "DMP FHIR CRUD benchmark",
        machine,
        server,
        args.backend_label,
        {
            "base": base,
            "clients": args.clients,
            "duration": args.duration,
            "tx": f"{args.tx_iterations}x{args.tx_size}",
        },
    )
    factory = PatientFactory(args.seed)
    created: list[str] = []
    created_lock = threading.Lock()
    clients = make_clients(args.clients, args.timeout)
    results: list[PhaseResult] = []

    def create(client: httpx.Client, _: int) -> tuple[int | None, str]:
        r = client.post(f"{base}/Patient", content=json.dumps(factory(), ensure_ascii=False).encode())
        if r.status_code == 201:
            rid = None
            try:
                rid = r.json().get("id")
            except ValueError:
                pass
            if not rid:
                loc = r.headers.get("location", "")
                rid = loc.split("/Patient/", 1)[-1].split("/")[0] if "/Patient/" in loc else None
            if rid:
                with created_lock:
                    created.append(rid)
            return r.status_code, ""
        return r.status_code, r.text

    def read(client: httpx.Client, _: int) -> tuple[int | None, str]:
        rid = random.choice(created)
        r = client.get(f"{base}/Patient/{rid}")
        return r.status_code, "" if r.status_code == 200 else r.text

    tx_bodies: list[bytes] = []  # built before the phase, so that the timing is the server's

    def transaction(client: httpx.Client, i: int) -> tuple[int | None, str]:
        r = client.post(base, content=tx_bodies[i])
        if r.status_code == 200:
            try:
                bundle = r.json()
                statuses = [e.get("response", {}).get("status", "") for e in bundle.get("entry", [])]
                if len(statuses) != args.tx_size or not all(s.startswith("201") for s in statuses):
                    return 599, f"transaction-response has {len(statuses)} entries, statuses {set(statuses)}"
            except ValueError:
                return 599, "transaction-response is not JSON"
            return 200, ""
        return r.status_code, r.text

    def warm(op: Callable[[httpx.Client, int], Any], n: int) -> None:
        for i in range(n):
            try:
                op(clients[i % len(clients)], i)
            except httpx.HTTPError:
                pass

    try:
        if "create" in phases or "read" in phases:
            warm(create, args.warmup)
        if "create" in phases:
            results.append(
                run_phase("create", clients, create, duration=args.duration, server_pid=args.server_pid)
            )
        if "read" in phases:
            if not created:
                warm(create, max(args.warmup, 10))
            if created:
                warm(read, args.warmup)
                results.append(
                    run_phase("read", clients, read, duration=args.duration, server_pid=args.server_pid)
                )
            else:
                console.print("[red]read phase skipped: no patient could be created[/]")
        if "transaction" in phases and args.tx_iterations:
            tx_bodies.extend(
                json.dumps(
                    transaction_of([factory() for _ in range(args.tx_size)]), ensure_ascii=False
                ).encode()
                for _ in range(args.tx_iterations)
            )
            results.append(
                run_phase(
                    "transaction",
                    clients,
                    transaction,
                    iterations=args.tx_iterations,
                    max_seconds=args.tx_max_seconds,
                    units_per_op=args.tx_size,
                    server_pid=args.server_pid,
                )
            )
    finally:
        for c in clients:
            c.close()

    print_table(console, f"CRUD, {args.clients} clients", results, rich_ok)
    out = {
        "benchmark": "crud",
        "machine": machine,
        "server": server,
        "backend": args.backend_label,
        "params": {k: v for k, v in vars(args).items() if k != "json_out"},
        "phases": {r.name: asdict(r) for r in results},
        "errors_total": sum(r.errors + r.exceptions for r in results),
    }
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=False, indent=2, default=str)
    return out


if __name__ == "__main__":
    res = main()
    sys.exit(1 if res["errors_total"] else 0)
