"""Storage guarantees: no lost update under concurrency, transactions all-or-nothing across crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from fhir_server.storage.repository import SimulatedCrash, WriteOp
from tests.conftest import make_patient, make_practitioner

ROOT = Path(__file__).resolve().parents[2]


def test_two_writers_with_if_match_one_wins_one_gets_412(live_server):
    with httpx.Client() as http:
        headers = {"Content-Type": "application/fhir+json"}
        patient = http.post(f"{live_server}/Patient", json=make_patient(), headers=headers).json()
        url = f"{live_server}/Patient/{patient['id']}"
        barrier = threading.Barrier(2)
        results = []

        def writer(gender):
            barrier.wait()
            r = httpx.put(url, json={**patient, "gender": gender}, headers={**headers, "If-Match": 'W/"1"'})
            results.append((gender, r.status_code))

        threads = [threading.Thread(target=writer, args=(g,)) for g in ("male", "other")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(code for _, code in results) == [200, 412]
        winner = next(g for g, code in results if code == 200)
        current = http.get(url).json()
        assert current["gender"] == winner and current["meta"]["versionId"] == "2"


def test_concurrent_updates_without_if_match_never_lose_a_write(live_server):
    with httpx.Client() as http:
        headers = {"Content-Type": "application/fhir+json"}
        patient = http.post(f"{live_server}/Patient", json=make_patient(), headers=headers).json()
        url = f"{live_server}/Patient/{patient['id']}"
        writers, per_writer = 4, 5
        errors = []

        def writer(n):
            with httpx.Client() as own:
                for i in range(per_writer):
                    body = {**patient, "name": [{"family": f"W{n}", "given": [f"v{i}"]}]}
                    r = own.put(url, json=body, headers=headers)
                    if r.status_code != 200:
                        errors.append(r.status_code)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        history = http.get(f"{url}/_history?_count=100").json()
        assert history["total"] == 1 + writers * per_writer
        versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
        assert versions == list(range(1, 2 + writers * per_writer))


def _ops(services):
    return [
        WriteOp("Patient", "tx-patient", {"resourceType": "Patient", **make_patient()}, "POST", 0),
        WriteOp("Practitioner", "tx-practitioner", make_practitioner(), "POST", 0),
    ]


def _nothing_left(services):
    repo = services.repository
    assert repo.count({}) == 0, list(repo.resources.find({}))
    assert repo.history_coll.count_documents({}) == 0
    assert repo.journal.count_documents({}) == 0


def _commit_crashing_at(repo, services, crash_step):
    def crash(step):
        if step == crash_step:
            raise SimulatedCrash()

    repo.fault_point = crash
    try:
        with pytest.raises(SimulatedCrash):
            repo.commit(_ops(services))
    finally:
        repo.fault_point = lambda step: None


def _recover_after_restart(repo):
    """recover() as a restart after the lock timeout would run it."""
    repo.lock_timeout = timedelta(0)
    try:
        repo.recover()
    finally:
        repo.lock_timeout = timedelta(seconds=60)


def test_crash_before_the_commit_point_is_rolled_back_by_recovery(services):
    repo = services.repository
    _commit_crashing_at(repo, services, "locked")
    # the placeholders are invisible to readers...
    assert repo.count({"state": "live"}) == 0
    # ...and start-up recovery removes them once their lock has expired
    _recover_after_restart(repo)
    _nothing_left(services)


def test_crash_after_the_commit_point_is_rolled_forward_by_recovery(services):
    repo = services.repository
    _commit_crashing_at(repo, services, "applied-one")
    assert repo.journal.count_documents({}) == 1
    repo.recover()
    assert repo.read("Patient", "tx-patient").vid == 1
    assert repo.read("Practitioner", "tx-practitioner").vid == 1
    assert repo.journal.count_documents({}) == 0


CRASHING_CHILD = """
import os, sys
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.storage.repository import WriteOp
from tests.conftest import make_patient, make_practitioner
app = create_app(Settings(mongodb_uri=sys.argv[1], database=sys.argv[2]))
repo = app.extensions["dmp"].repository
def die(step):
    if step == sys.argv[3]:
        os._exit(17)   # the process dies here: no cleanup, no exception handling
repo.fault_point = die
repo.commit([
    WriteOp("Patient", "killed-patient", make_patient(), "POST", 0),
    WriteOp("Practitioner", "killed-practitioner", make_practitioner(), "POST", 0),
])
"""


@pytest.mark.parametrize("step, survives", [("locked", False), ("applied-one", True)])
def test_a_process_killed_mid_transaction_leaves_all_or_nothing(app, services, mongo_uri, step, survives):
    settings = app.config["DMP_SETTINGS"]
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_CHILD, mongo_uri, settings.database, step],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=120,
    )
    assert child.returncode == 17, child.stderr.decode()[-2000:]
    repo = services.repository
    _recover_after_restart(repo)
    live = {d["_id"] for d in repo.resources.find({"state": "live"}, {"_id": 1})}
    if survives:
        assert live == {"Patient/killed-patient", "Practitioner/killed-practitioner"}
    else:
        _nothing_left(services)


def test_a_write_meeting_a_fresh_transaction_lock_is_409(services, client):
    repo = services.repository
    patient = client.post("/fhir/Patient", json=make_patient()).json
    repo.resources.update_one({"_id": f"Patient/{patient['id']}"}, {"$set": {"txn": "txn-x", "txn_at": repo.clock()}})
    response = client.put(f"/fhir/Patient/{patient['id']}", json=patient)
    assert response.status_code == 409
    repo.resources.update_one({"_id": f"Patient/{patient['id']}"}, {"$unset": {"txn": "", "txn_at": ""}})


def test_a_single_write_that_died_between_history_and_current_is_rolled_forward(services, client):
    repo = services.repository
    patient = client.post("/fhir/Patient", json=make_patient()).json
    # simulate a writer that inserted version 2 into history and died
    stored = {**patient, "gender": "other", "meta": {"versionId": "2", "lastUpdated": "2026-01-01T00:00:00.000Z"}}
    repo.history_coll.insert_one(
        repo._history_doc("Patient", patient["id"], 2, repo.clock(), stored, "PUT", "dead-writer")
    )
    response = client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": "male"})
    assert response.status_code == 200 and response.json["meta"]["versionId"] == "3"
    history = client.get(f"/fhir/Patient/{patient['id']}/_history").json
    assert [e["resource"]["gender"] for e in history["entry"]] == ["male", "other", "female"]


# ---------------------------------------------------------------- query shape


def test_and_equalities_are_lifted_to_the_top_level():
    from fhir_server.storage.repository import flat_conjunction

    query = {"rt": "DocumentReference", "state": "live", "$and": [
        {"ix.rf": {"$in": ["patient|Patient/1"]}}, {"ix.tk": "status|*|current"},
        {"$nor": [{"ix.tk": "isArchived|*|true"}]}, {"ix.tk": "type|http://loinc.org|11490-0"},
        {"ix.rf": {"$in": ["a", "b"]}},
    ]}
    assert flat_conjunction(query) == {
        "rt": "DocumentReference", "state": "live", "ix.rf": "patient|Patient/1", "ix.tk": "status|*|current",
        "$and": [{"$nor": [{"ix.tk": "isArchived|*|true"}]}, {"ix.tk": "type|http://loinc.org|11490-0"},
                 {"ix.rf": {"$in": ["a", "b"]}}],
    }
    assert flat_conjunction({"rt": "Patient"}) == {"rt": "Patient"}
    assert flat_conjunction({"$and": [{"a": 1}]}) == {"a": 1}


def test_lifted_queries_find_exactly_what_the_original_finds(services):
    from fhir_server.storage.repository import flat_conjunction

    coll = services.repository.db["resources"]
    coll.insert_many([
        {"_id": f"T/{i}", "rt": "T", "state": "live" if i % 3 else "deleted",
         "ix": {"tk": [f"k|*|{i % 2}", f"t|*|{i % 5}"], "rf": [f"patient|Patient/{i % 4}"]}}
        for i in range(40)
    ])
    queries = [
        {"rt": "T", "$and": [{"ix.tk": "k|*|1"}, {"ix.rf": {"$in": ["patient|Patient/1"]}}]},
        {"rt": "T", "$and": [{"ix.tk": "k|*|0"}, {"ix.tk": "t|*|2"}, {"$nor": [{"state": "deleted"}]}]},
        {"$and": [{"rt": "T"}, {"ix.rf": {"$in": ["patient|Patient/2", "patient|Patient/3"]}}, {"state": "live"}]},
    ]
    for query in queries:
        assert flat_conjunction(query) != query
        expected = sorted(d["_id"] for d in coll.find(query))
        assert expected, query
        assert sorted(d["_id"] for d in coll.find(flat_conjunction(query))) == expected
        assert services.repository.count(query) == len(expected)
