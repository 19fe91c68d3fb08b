#!/usr/bin/env python3
"""Search latency benchmark for the DMP FHIR server: the typical EHR queries, over real HTTP.

Loads ``--patients N`` patients' worth of demo data (``fhir_server.demo_data``: about 8.5
resources per patient with the default 3 documents each) through the transaction endpoint, unless
``--skip-load``, then times, with ``--clients`` threads holding a keep-alive ``httpx.Client`` each,
``--iterations`` requests of each query:

``patient_by_ins``
    ``Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|<nir>`` (real NIRs from the loaded data);
``docref_patient_type``
    ``DocumentReference?patient=Patient/<id>&type=http://loinc.org|<code>&date=ge2020-01-01
    &_include=DocumentReference:author&_sort=-date&_count=50``;
``docref_patient_type_p2``
    the ``next`` link of that query, when a patient has more than 50 such documents;
``docref_date_sorted`` / ``docref_date_sorted_p2``
    ``DocumentReference?date=ge2000&_sort=-date&_count=50`` and its ``next`` page (run when the
    query above has no second page, which is the case with a few documents per patient);
``docref_chain_ins``
    ``DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|<nir>`` (chained search).

Every response is also checked against the loaded data (the number of matches it should have):
a wrong answer counts as a ``mismatch``, apart from HTTP errors.

Usage::

    python scripts/bench_search.py --base http://127.0.0.1:8090/fhir --patients 118 --json /tmp/s1k.json
    python scripts/bench_search.py --compare /tmp/s1k.json /tmp/s10k.json   # p99 growth table

Importable: ``main(argv) -> dict``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_crud import (  # sibling script, found through the sys.path entry above
    HEADERS,
    PhaseResult,
    get_console,
    machine_info,
    print_header,
    print_table,
    run_phase,
    server_info,
)

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
DATE_FLOOR = "2020-01-01"
COUNTED_TYPES = ("Patient", "Practitioner", "PractitionerRole", "Organization", "DocumentReference", "Binary")


# ------------------------------------------------------------------------------ loading
@dataclass
class LoadedPatient:
    rid: str
    nir: str | None
    docs: list[tuple[str, str, str]] = field(default_factory=list)  # (system, code, date)


@dataclass
class LoadReport:
    bundles: int = 0
    resources: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0
    failed_bundles: int = 0
    failure_samples: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def resources_per_s(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def _ins_of(patient: dict) -> str | None:
    for ident in patient.get("identifier", []):
        if ident.get("system") == INS_NIR:
            return ident.get("value")
    return None


def _absorb(bundle: dict, response: dict, patients: dict[str, LoadedPatient], report: LoadReport) -> None:
    """Pair request and response entries (same order) to learn the server ids."""
    by_url: dict[str, str] = {}
    entries = bundle.get("entry", [])
    answers = response.get("entry", [])
    for entry, answer in zip(entries, answers):
        location = answer.get("response", {}).get("location", "")
        parts = location.split("/_history")[0].rstrip("/").split("/")
        if len(parts) >= 2 and entry.get("fullUrl"):
            by_url[entry["fullUrl"]] = parts[-1]
    for entry in entries:
        res = entry["resource"]
        report.by_type[res["resourceType"]] = report.by_type.get(res["resourceType"], 0) + 1
        if res["resourceType"] == "Patient" and entry.get("fullUrl") in by_url:
            patients[entry["fullUrl"]] = LoadedPatient(by_url[entry["fullUrl"]], _ins_of(res))
    for entry in entries:
        res = entry["resource"]
        if res["resourceType"] != "DocumentReference":
            continue
        owner = patients.get(res.get("subject", {}).get("reference", ""))
        if owner is None:
            continue
        for coding in res.get("type", {}).get("coding", []):
            owner.docs.append((coding.get("system", ""), coding.get("code", ""), res.get("date", "")))


def load_demo(
    base: str,
    n_patients: int,
    *,
    seed: int,
    docs_per_patient: int,
    patients_per_bundle: int,
    concurrency: int,
    timeout: float,
    max_seconds: float,
    console: Any,
) -> tuple[LoadReport, list[LoadedPatient]]:
    """POST the demo transaction bundles; the first one alone (shared organisations)."""
    from fhir_server.demo_data import iter_bundles

    report = LoadReport()
    patients: dict[str, LoadedPatient] = {}
    lock = threading.Lock()
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers=HEADERS, timeout=timeout)
            with lock:
                clients.append(local.client)
        return local.client

    def post(bundle: dict) -> None:
        body = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            r = client().post(base, content=body)
        except httpx.HTTPError as exc:  # a timeout: the server may still be committing the bundle
            with lock:
                report.failed_bundles += 1
                if len(report.failure_samples) < 3:
                    report.failure_samples.append(f"{type(exc).__name__}: {exc}")
            return
        with lock:
            report.bytes_sent += len(body)
            if r.status_code >= 300:
                report.failed_bundles += 1
                if len(report.failure_samples) < 3:
                    report.failure_samples.append(f"HTTP {r.status_code}: {r.text[:400]}")
                return
            report.bundles += 1
            report.resources += len(bundle.get("entry", []))
            _absorb(bundle, r.json(), patients, report)

    started = time.perf_counter()
    deadline = started + max_seconds
    total_bundles = -(-n_patients // patients_per_bundle) + 1
    last_print = started
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        pending: set = set()
        for index, bundle in enumerate(
            iter_bundles(n_patients, seed, docs_per_patient, patients_per_bundle=patients_per_bundle)
        ):
            if time.perf_counter() > deadline:
                console.print(f"[yellow]load stopped at its time bound ({max_seconds:.0f} s)[/]")
                break
            pending.add(pool.submit(post, bundle))
            if index == 0 or len(pending) >= concurrency:
                done, pending = (
                    wait(pending, return_when=FIRST_COMPLETED) if index else (wait(pending)[0], set())
                )
                for fut in done:
                    fut.result()
            now = time.perf_counter()
            if now - last_print > 15:
                last_print = now
                console.print(
                    f"  loading: {report.bundles}/{total_bundles} bundles, {report.resources} resources, "
                    f"{report.resources / (now - started):.1f} resources/s"
                )
        for fut in wait(pending)[0]:
            fut.result()
    report.seconds = time.perf_counter() - started
    for c in clients:
        c.close()
    return report, list(patients.values())


def discover(base: str, sample: int, timeout: float) -> list[LoadedPatient]:
    """With --skip-load: learn patients, NIRs and document types from the server itself."""
    with httpx.Client(headers=HEADERS, timeout=timeout) as c:
        docs = c.get(f"{base}/DocumentReference", params={"_count": str(sample * 3)}).json()
        by_pid: dict[str, LoadedPatient] = {}
        for e in docs.get("entry", []):
            res = e.get("resource", {})
            if res.get("resourceType") != "DocumentReference":
                continue
            ref = res.get("subject", {}).get("reference", "")
            if not ref.startswith("Patient/"):
                continue
            pid = ref.split("/", 1)[1]
            p = by_pid.setdefault(pid, LoadedPatient(pid, None))
            for coding in res.get("type", {}).get("coding", []):
                p.docs.append((coding.get("system", ""), coding.get("code", ""), res.get("date", "")))
        out = []
        for pid, p in list(by_pid.items())[:sample]:
            r = c.get(f"{base}/Patient/{pid}")
            if r.status_code == 200:
                p.nir = _ins_of(r.json())
                # The documents seen are a sample: ask for the full list of this patient.
                full = c.get(
                    f"{base}/DocumentReference", params={"patient": f"Patient/{pid}", "_count": "1000"}
                )
                p.docs = [
                    (cd.get("system", ""), cd.get("code", ""), e["resource"].get("date", ""))
                    for e in full.json().get("entry", [])
                    if e.get("search", {}).get("mode") == "match"
                    for cd in e["resource"].get("type", {}).get("coding", [])
                ]
                out.append(p)
        return out


def count_resources(base: str, timeout: float, fallback: dict[str, int]) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    with httpx.Client(headers=HEADERS, timeout=timeout) as c:
        for rt in COUNTED_TYPES:
            try:
                r = c.get(f"{base}/{rt}", params={"_summary": "count"})
                if r.status_code == 200 and "total" in r.json():
                    counts[rt] = r.json()["total"]
                    continue
                counts[rt] = f"HTTP {r.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                counts[rt] = f"{type(exc).__name__}"
    numeric = {k: v for k, v in counts.items() if isinstance(v, int)}
    missing = [k for k in COUNTED_TYPES if k not in numeric]
    total = sum(numeric.values()) + sum(fallback.get(k, 0) for k in missing)
    return {"by_type": counts, "total": total, "estimated_from_load": missing}


# ------------------------------------------------------------------------------ queries
def _q(params: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{k}={quote(v, safe='/:|,-.')}" for k, v in params)


def docref_query(p: LoadedPatient, code: str) -> str:
    return "DocumentReference?" + _q(
        [
            ("patient", f"Patient/{p.rid}"),
            ("type", f"{LOINC}|{code}"),
            ("date", f"ge{DATE_FLOOR}"),
            ("_include", "DocumentReference:author"),
            ("_sort", "-date"),
            ("_count", "50"),
        ]
    )


def _next_link(bundle: dict) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return link.get("url")
    return None


def _matches(bundle: dict) -> int:
    return sum(1 for e in bundle.get("entry", []) if e.get("search", {}).get("mode", "match") == "match")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Search benchmark (typical DMP queries) with demo data.")
    p.add_argument("--base", default="http://127.0.0.1:8090/fhir", help="FHIR base URL")
    p.add_argument("--patients", type=int, default=118, help="demo patients to load (~8.5 resources each)")
    p.add_argument("--skip-load", action="store_true", help="use the data already on the server")
    p.add_argument("--sample", type=int, default=50, help="with --skip-load: patients to discover")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (threads)")
    p.add_argument("--iterations", type=int, default=200, help="requests per query")
    p.add_argument("--max-seconds", type=float, default=300.0, help="time bound per query phase")
    p.add_argument("--seed", type=int, default=42, help="demo data seed")
    p.add_argument("--docs-per-patient", type=int, default=3)
    p.add_argument("--patients-per-bundle", type=int, default=20)
    p.add_argument("--load-concurrency", type=int, default=2, help="bundles posted in parallel")
    p.add_argument("--load-max-seconds", type=float, default=1800.0, help="time bound of the load")
    p.add_argument("--timeout", type=float, default=600.0, help="HTTP timeout per request, seconds")
    p.add_argument("--warmup", type=int, default=3, help="untimed requests before each query")
    p.add_argument("--queries", default="", help="comma-separated subset of the query names")
    p.add_argument("--backend-label", default=None)
    p.add_argument("--server-pid", type=int, default=None, help="report this process's CPU use per query")
    p.add_argument("--json", dest="json_out", default=None, help="write the results as JSON to this file")
    p.add_argument("--no-rich", action="store_true")
    p.add_argument("--compare", nargs="+", metavar="JSON", help="print the p99 growth table of earlier runs")
    return p


def compare(paths: Sequence[str]) -> str:
    """A Markdown table: p50/p99 and searches/s per query and size, and p99 growth vs the first."""
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    names: list[str] = []
    for run in runs:
        names += [n for n in run["queries"] if n not in names]
    head = "| query | " + " | ".join(f"{r['resources']['total']:,} res: p50 / p99 ms, q/s" for r in runs)
    head += " | " + " | ".join(
        f"p99 x ({runs[0]['resources']['total']:,}→{r['resources']['total']:,})" for r in runs[1:]
    )
    lines = [head + " |", "|" + "---|" * (1 + len(runs) + len(runs) - 1)]
    for n in names:
        cells = []
        for r in runs:
            q = r["queries"].get(n)
            cells.append(f"{q['p50_ms']:.0f} / {q['p99_ms']:.0f}, {q['ops_per_s']:.1f}" if q else "-")
        ratios = []
        first = runs[0]["queries"].get(n)
        for r in runs[1:]:
            q = r["queries"].get(n)
            ratios.append(f"{q['p99_ms'] / first['p99_ms']:.1f}x" if q and first and first["p99_ms"] else "-")
        lines.append(f"| `{n}` | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    if args.compare:
        table = compare(args.compare)
        print(table)
        return {"benchmark": "search-compare", "markdown": table, "errors_total": 0}
    if args.clients < 1 or args.iterations < 1 or args.patients < 0:
        _parser().error("--clients >= 1, --iterations >= 1, --patients >= 0")
    base = args.base.rstrip("/")
    console, rich_ok = get_console(not args.no_rich)
    machine, server = machine_info(), server_info(base)
    print_header(
        console,
        "DMP FHIR search benchmark",
        machine,
        server,
        args.backend_label,
        {
            "base": base,
            "patients": "existing" if args.skip_load else args.patients,
            "clients": args.clients,
            "iterations": args.iterations,
        },
    )
    load: LoadReport | None = None
    if args.skip_load:
        patients = discover(base, max(1, args.sample), args.timeout)
    else:
        load, patients = load_demo(
            base,
            args.patients,
            seed=args.seed,
            docs_per_patient=args.docs_per_patient,
            patients_per_bundle=args.patients_per_bundle,
            concurrency=max(1, args.load_concurrency),
            timeout=args.timeout,
            max_seconds=args.load_max_seconds,
            console=console,
        )
        console.print(
            f"loaded {load.bundles} bundles, {load.resources} resources ({load.bytes_sent / 1e6:.1f} MB) in "
            f"{load.seconds:.1f} s: [bold]{load.resources_per_s:.1f} resources/s[/]"
            + (f", [red]{load.failed_bundles} bundles refused[/]" if load.failed_bundles else "")
        )
        for sample in load.failure_samples:
            console.print(f"  [red]refused:[/] {sample}", highlight=False)
    t0 = time.perf_counter()
    resources = count_resources(base, args.timeout, load.by_type if load else {})
    resources["count_seconds"] = round(time.perf_counter() - t0, 2)
    console.print(f"resources on the server: {resources['total']:,} {resources['by_type']}")

    with_nir = [p for p in patients if p.nir]
    # (patient, LOINC code, expected matches) for the patient/type/date query
    typed = []
    for p in patients:
        codes: dict[str, int] = defaultdict(int)
        for system, code, date in p.docs:
            if system == LOINC and date[:10] >= DATE_FLOOR:
                codes[code] += 1
        typed += [(p, code, n) for code, n in codes.items()]
    if not with_nir or not typed:
        console.print("[red]no patient with an INS and LOINC-typed documents: nothing to search[/]")
        out = {"benchmark": "search", "errors_total": 1, "queries": {}, "resources": resources}
        return out
    rng = random.Random(args.seed)
    mismatches: dict[str, int] = defaultdict(int)
    mismatch_samples: dict[str, list[str]] = defaultdict(list)
    mlock = threading.Lock()

    def check(name: str, r: httpx.Response, expected: int | None, url: str) -> tuple[int, str]:
        if r.status_code != 200:
            return r.status_code, r.text
        body = r.json()
        if body.get("resourceType") != "Bundle":
            return 598, f"not a Bundle: {r.text[:200]}"
        if expected is not None and _matches(body) != expected:
            with mlock:
                mismatches[name] += 1
                if len(mismatch_samples[name]) < 3:
                    mismatch_samples[name].append(f"{url} -> {_matches(body)} matches, expected {expected}")
        return 200, ""

    def q_patient_by_ins(c: httpx.Client, i: int) -> tuple[int, str]:
        p = with_nir[rng.randrange(len(with_nir))]
        url = f"{base}/Patient?" + _q([("identifier", f"{INS_NIR}|{p.nir}")])
        return check("patient_by_ins", c.get(url), 1, url)

    def q_docref(c: httpx.Client, i: int) -> tuple[int, str]:
        p, code, n = typed[rng.randrange(len(typed))]
        url = f"{base}/{docref_query(p, code)}"
        return check("docref_patient_type", c.get(url), min(n, 50), url)

    def q_chain(c: httpx.Client, i: int) -> tuple[int, str]:
        p = with_nir[rng.randrange(len(with_nir))]
        url = f"{base}/DocumentReference?" + _q([("patient.identifier", f"{INS_NIR}|{p.nir}")])
        # one type coding per document in the demo data: the document count is the number of codings
        return check("docref_chain_ins", c.get(url), len(p.docs), url)

    global_params = [("date", "ge2000"), ("_sort", "-date"), ("_count", "50")]
    global_url = f"{base}/DocumentReference?" + _q(global_params)

    def q_global(c: httpx.Client, i: int) -> tuple[int, str]:
        return check("docref_date_sorted", c.get(global_url), None, global_url)

    next_links: dict[str, list[str]] = {}

    def q_page2(name: str):
        def op(c: httpx.Client, i: int) -> tuple[int, str]:
            links = next_links[name]
            url = links[i % len(links)]
            return check(name, c.get(url), None, url)

        return op

    queries: list[tuple[str, Any]] = [
        ("patient_by_ins", q_patient_by_ins),
        ("docref_patient_type", q_docref),
    ]
    # Second page of the patient query: only patients with more than 50 such documents have one.
    with httpx.Client(headers=HEADERS, timeout=args.timeout) as c:
        big = [(p, code) for p, code, n in typed if n > 50][:20]
        links = [_next_link(c.get(f"{base}/{docref_query(p, code)}").json()) for p, code in big]
        next_links["docref_patient_type_p2"] = [u for u in links if u]
        if next_links["docref_patient_type_p2"]:
            queries.append(("docref_patient_type_p2", q_page2("docref_patient_type_p2")))
        else:
            console.print(
                "no patient has more than 50 documents of one type: no second page for the patient "
                "query; measuring DocumentReference?date=ge2000&_sort=-date&_count=50 and its page 2"
            )
            queries.append(("docref_date_sorted", q_global))
            first = c.get(global_url).json()
            nxt = _next_link(first)
            next_links["docref_date_sorted_p2"] = [nxt] if nxt else []
            if nxt:
                queries.append(("docref_date_sorted_p2", q_page2("docref_date_sorted_p2")))
            else:
                console.print(
                    "[yellow]the date-sorted query has no next page either (fewer than 51 documents)[/]"
                )
    queries.append(("docref_chain_ins", q_chain))
    if args.queries:
        wanted = {q.strip() for q in args.queries.split(",")}
        queries = [q for q in queries if q[0] in wanted]

    clients = [
        httpx.Client(headers=HEADERS, timeout=args.timeout, limits=httpx.Limits(max_connections=1))
        for _ in range(args.clients)
    ]
    results: list[PhaseResult] = []
    try:
        for name, op in queries:
            for i in range(args.warmup):
                try:
                    op(clients[i % len(clients)], i)
                except httpx.HTTPError:
                    pass
            console.print(f"  running {name} ...")
            res = run_phase(
                name,
                clients,
                op,
                iterations=args.iterations,
                max_seconds=args.max_seconds,
                server_pid=args.server_pid,
            )
            res.extra["mismatches"] = mismatches.get(name, 0)
            res.extra["mismatch_samples"] = mismatch_samples.get(name, [])
            results.append(res)
    finally:
        for c in clients:
            c.close()

    print_table(
        console, f"Search, {resources['total']:,} resources, {args.clients} clients", results, rich_ok
    )
    for r in results:
        if r.extra["mismatches"]:
            console.print(
                f"  [red]{r.name}: {r.extra['mismatches']} answers with an unexpected match count[/]"
            )
            for s in r.extra["mismatch_samples"]:
                console.print(f"    {s}", highlight=False, markup=False)
    out = {
        "benchmark": "search",
        "machine": machine,
        "server": server,
        "backend": args.backend_label,
        "params": {k: v for k, v in vars(args).items() if k not in ("json_out", "compare")},
        "load": None if load is None else {**asdict(load), "resources_per_s": load.resources_per_s},
        "resources": resources,
        "patients_sampled": len(patients),
        "queries": {r.name: asdict(r) for r in results},
        "mismatches_total": sum(r.extra["mismatches"] for r in results),
        "errors_total": sum(r.errors + r.exceptions for r in results) + (load.failed_bundles if load else 0),
    }
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(out, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    return out


if __name__ == "__main__":
    res = main()
    sys.exit(1 if res["errors_total"] else 0)
