#!/usr/bin/env python3
"""What the access policy and the audit trail cost, measured in process against a real server.

    python scripts/bench_policy_audit.py [--patients 200] [--iterations 200] [--mongodb-uri URI]

Loads French demo data into a fresh database, then times:
- the same DocumentReference search as a system client (no DMP rules), the patient, the GP and a
  nurse with a permit Consent (policy inside the query): ratio to the system client;
- read by id with the audit trail on, and with audit writes disabled (the cheapest correct way is
  what production does: one insert per event, before the response): ratio.
Without --mongodb-uri a FerretDB/mongod server is started with scripts/dbserver.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_server.app import create_app  # noqa: E402
from fhir_server.auth.scopes import ScopeSet  # noqa: E402
from fhir_server.config import Settings  # noqa: E402
from fhir_server.demo_data import generate  # noqa: E402
from fhir_server.interactions.context import RequestContext  # noqa: E402
from fhir_server.policy import operator_principal  # noqa: E402

TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"


def timed(fn, iterations: int) -> tuple[float, float]:
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--mongodb-uri")
    args = parser.parse_args()
    handle = None
    uri = args.mongodb_uri
    if not uri:
        spec = importlib.util.spec_from_file_location("dbserver", ROOT / "scripts" / "dbserver.py")
        dbserver = importlib.util.module_from_spec(spec)
        sys.modules["dbserver"] = dbserver
        spec.loader.exec_module(dbserver)
        handle = dbserver.start_server()
        uri = handle.uri
        print(f"database: {handle.kind} at {uri}")
    database = f"bench_policy_{uuid.uuid4().hex[:6]}"
    try:
        app = create_app(Settings(mongodb_uri=uri, database=database))
        quiet = create_app(Settings(mongodb_uri=uri, database=database, audit_enabled=False))
        services = app.extensions["dmp"]
        ctx = RequestContext("http://localhost/fhir", access=services.policy.for_principal(operator_principal("bench")))
        started = time.perf_counter()
        for bundle in generate(args.patients, seed=7):
            services.bundles.process(ctx, bundle)
        print(f"loaded {args.patients} patients in {time.perf_counter() - started:.1f} s")
        repo = services.repository
        patients = [v for v in repo.find({"rt": "Patient", "state": "live", "res.generalPractitioner": {"$exists": True}}, limit=50)]
        patient = random.Random(1).choice(patients)
        gp = patient.resource["generalPractitioner"][0]["reference"]
        nurse = next(repo.find({"rt": "Practitioner", "state": "live"}, limit=1))
        consent = {
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient.rid}"},
            "provision": {"type": "permit", "actor": [{"reference": {"reference": f"Practitioner/{nurse.rid}"},
                          "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}}]},
        }
        repo.create(consent)
        tokens = app.extensions["dmp_auth"].tokens

        def token(kind, fhir_user, scope, patient_id=None, profession=None):
            ctx_claims = {"kind": kind, "fhir_user": fhir_user, "patient": patient_id,
                          "professions": [{"system": TRE_G15, "code": profession}] if profession else [],
                          "purpose_of_use": ["TREAT"] if kind == "practitioner" else []}
            value, _ = tokens.access_token(issuer="http://localhost", audience="http://localhost/fhir",
                                           client_id="bench", scope=ScopeSet.parse(scope),
                                           subject=fhir_user or "bench", grant_id=None, ctx=ctx_claims)
            return {"Authorization": f"Bearer {value}", "Accept": "application/fhir+json"}

        callers = {
            "system client": token("system", None, "system/*.rs"),
            "patient": token("patient", f"Patient/{patient.rid}", "patient/*.rs", patient.rid),
            "GP": token("practitioner", gp, "user/*.rs", profession="10"),
            "nurse (Consent)": token("practitioner", f"Practitioner/{nurse.rid}", "user/*.rs", profession="60"),
        }
        client = app.test_client()
        url = f"/fhir/DocumentReference?patient=Patient/{patient.rid}&_sort=-date&_count=50"
        print(f"\nsearch {url}  ({args.iterations} iterations each)")
        baseline = None
        for name, headers in callers.items():
            found = client.get(url, headers=headers).get_json().get("total")
            p50, p99 = timed(lambda: client.get(url, headers=headers), args.iterations)
            baseline = baseline or p50
            print(f"  {name:<16} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ratio {p50 / baseline:4.2f}  ({found} documents)")
        doc = next(repo.find({"rt": "DocumentReference", "state": "live", "comp": f"Patient/{patient.rid}"}, limit=1))
        read_url = f"/fhir/DocumentReference/{doc.rid}"
        headers = callers["system client"]
        quiet_client = quiet.test_client()
        print(f"\nread by id {read_url}")
        on = timed(lambda: client.get(read_url, headers=headers), args.iterations)
        off = timed(lambda: quiet_client.get(read_url, headers=headers), args.iterations)
        print(f"  audit on   p50 {on[0]:6.2f} ms  p99 {on[1]:6.2f} ms  ({1000 / on[0]:.0f} reads/s, one thread)")
        print(f"  audit off  p50 {off[0]:6.2f} ms  p99 {off[1]:6.2f} ms  ({1000 / off[0]:.0f} reads/s, one thread)")
        print(f"  overhead   {100 * (on[0] / off[0] - 1):.0f} %")
        services.repository.db.client.drop_database(database)
    finally:
        if handle is not None:
            handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
