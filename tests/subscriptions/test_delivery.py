"""rest-hook notifications received by a real webhook endpoint on loopback."""

from __future__ import annotations

import json
import time

import pytest

from fhir_server.subscriptions import SubscriptionSettings
from tests.subscriptions.conftest import MAX_ATTEMPTS, Receiver, document, make_app, subscription

HELENE_DOCS = "DocumentReference?patient=Patient/helene"
TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"


def subscribe(client, criteria, endpoint, **kw) -> dict:
    response = client.post("/fhir/Subscription", json=subscription(criteria, endpoint, **kw))
    assert response.status_code == 201, response.json
    return response.json


def notification_audits(app) -> list[dict]:
    return [e for e in app.extensions["dmp"].audit.iter_events() if e.get("outcomeDesc", "").startswith("rest-hook")]


def add_document(client, patient="helene", title="Compte rendu de consultation", author="Practitioner/dr-martin") -> dict:
    response = client.post("/fhir/DocumentReference", json=document(patient, author, title))
    assert response.status_code == 201, response.json
    return response.json


def test_a_matching_document_is_notified_with_an_empty_post(actor, worker, receiver, sub_app):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url("/hook"), headers=["Authorization: Bearer secret-du-cabinet"])
    created = add_document(martin)
    assert worker.drain(10)
    [hit] = receiver.requests
    assert hit["method"] == "POST" and hit["path"] == "/hook"
    assert hit["body"] == b""  # R4: no payload, no body: the subscriber searches for what changed
    assert hit["headers"]["Authorization"] == "Bearer secret-du-cabinet"
    # the notification is an access by the subscriber, in helene's access history
    [audit] = [e for e in notification_audits(sub_app) if any(
        x.get("what", {}).get("reference") == f"DocumentReference/{created['id']}" for x in e["entity"])]
    assert audit["outcome"] == "0" and audit["agent"][0]["who"] == {"reference": "Practitioner/dr-martin"}
    assert {"reference": "Patient/helene"} in [x["what"] for x in audit["entity"]]


def test_a_document_that_does_not_match_is_not_notified(actor, worker, receiver, sub_app):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS + "&type=http://loinc.org|11488-4", receiver.url())
    add_document(actor("dr-blocked"), patient="zoe")  # another patient
    response = martin.post("/fhir/DocumentReference", json={
        **document("helene", "Practitioner/dr-martin"), "type": {"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}})
    assert response.status_code == 201  # helene, but another document type
    assert sub_app.extensions["dmp"].subscriptions.outbox.count_documents({}) == 0
    assert worker.drain(10)
    assert receiver.requests == []


def test_full_payload_puts_the_resource_at_endpoint_type_id(actor, worker, receiver):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url("/fhir"), payload="application/fhir+json")
    subscribe(martin, HELENE_DOCS, receiver.url("/ping"))
    created = add_document(martin, title="Lettre de liaison")
    assert worker.drain(10)
    [full] = receiver.at("/fhir")
    assert full["method"] == "PUT" and full["path"] == f"/fhir/DocumentReference/{created['id']}"
    assert full["headers"]["Content-Type"] == "application/fhir+json"
    assert json.loads(full["body"]) == created
    [ping] = receiver.at("/ping")
    assert ping["method"] == "POST" and ping["body"] == b""


def test_an_update_is_notified_too(actor, worker, receiver):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url(), payload="application/fhir+json")
    created = add_document(martin)
    assert worker.drain(10)
    updated = martin.put(f"/fhir/DocumentReference/{created['id']}", json={**created, "status": "superseded"})
    assert updated.status_code == 200, updated.json
    assert worker.drain(10)
    assert [json.loads(r["body"])["meta"]["versionId"] for r in receiver.requests] == ["1", "2"]


@pytest.mark.parametrize("subscriber, criteria", [
    ("helene", "DocumentReference?patient=Patient/paul"),  # a patient token, another patient's record
    ("dr-other", HELENE_DOCS),  # a professional without authorisation on helene's record
    ("dr-blocked", HELENE_DOCS),  # blocked by helene
])
def test_a_subscriber_who_may_not_see_the_document_gets_nothing(actor, worker, receiver, subscriber, criteria, sub_app):
    subscribe(actor(subscriber), criteria, receiver.url(), payload="application/fhir+json")
    add_document(actor("dr-martin"), patient=criteria.rsplit("/", 1)[1])
    assert sub_app.extensions["dmp"].subscriptions.outbox.count_documents({}) == 1  # it matched...
    assert worker.drain(10)
    assert receiver.requests == []  # ...but nothing leaves: not even an empty notification
    assert sub_app.extensions["dmp"].subscriptions.outbox.count_documents({}) == 0
    withheld = [e for e in notification_audits(sub_app) if "withheld" in e["outcomeDesc"]]
    assert withheld and withheld[-1]["outcome"] == "4"


def test_the_patient_is_notified_of_her_own_record_and_a_masked_document_stays_hidden_from_professionals(actor, worker, receiver):
    subscribe(actor("helene"), HELENE_DOCS, receiver.url("/helene"), payload="application/fhir+json")
    subscribe(actor("nurse"), HELENE_DOCS, receiver.url("/nurse"), payload="application/fhir+json")
    masked = document("helene", "Practitioner/dr-authorised")
    masked["securityLabel"].append({"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]})
    response = actor("dr-authorised").post("/fhir/DocumentReference", json=masked)
    assert response.status_code == 201, response.json
    assert worker.drain(10)
    assert len(receiver.at("/helene")) == 1
    assert receiver.at("/nurse") == []  # authorised on helene's record, but not on masked documents


def test_access_is_decided_at_delivery_time(actor, worker, receiver, sub_app):
    """A document masked after it was queued is not sent to a professional who can no longer see it."""
    nurse = actor("nurse")
    subscribe(nurse, HELENE_DOCS, receiver.url(), payload="application/fhir+json")
    created = add_document(actor("dr-martin"))
    labels = created["securityLabel"] + [{"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]}]
    repository = sub_app.extensions["dmp"].repository
    repository.update("DocumentReference", created["id"], {**created, "securityLabel": labels})
    assert worker.drain(10)
    assert receiver.requests == []


def test_a_receiver_down_for_a_while_gets_the_notification_after_retries(actor, worker, sub_app):
    receiver = Receiver()  # not listening yet: connection refused
    martin = actor("dr-martin")
    sub = subscribe(martin, HELENE_DOCS, receiver.url())
    add_document(martin)
    outbox = sub_app.extensions["dmp"].subscriptions.outbox
    assert worker.run_once() == 1
    [entry] = list(outbox.find({}))
    assert entry["state"] == "pending" and entry["attempts"] == 1 and "refused" in entry["last_error"]
    receiver.start()
    try:
        assert worker.drain(10)
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
    assert outbox.count_documents({}) == 0
    assert martin.get(f"/fhir/Subscription/{sub['id']}").json["status"] == "active"


def test_a_receiver_always_down_dead_letters_and_sets_the_subscription_in_error(actor, worker, sub_app):
    receiver = Receiver()  # never listening
    martin = actor("dr-martin")
    sub = subscribe(martin, HELENE_DOCS, receiver.url())
    add_document(martin)
    assert worker.drain(10)
    services = sub_app.extensions["dmp"].subscriptions
    [dead] = services.dead_letters(f"Subscription/{sub['id']}")
    assert dead["attempts"] == MAX_ATTEMPTS
    seen = martin.get(f"/fhir/Subscription/{sub['id']}").json
    assert seen["status"] == "error"
    assert seen["error"] == f"delivery to {receiver.url()} failed {MAX_ATTEMPTS} times: connection refused"
    assert seen["meta"]["versionId"] == "2"  # written through the repository: a new version
    history = martin.get(f"/fhir/Subscription/{sub['id']}/_history").json
    assert [e["resource"]["status"] for e in history["entry"]] == ["error", "active"]
    # the endpoint comes back: the next notification is delivered and the subscription is active again
    receiver.start()
    try:
        add_document(martin, title="Deuxième compte rendu")
        assert worker.drain(10)
        assert len(receiver.requests) == 1
    finally:
        receiver.stop()
    back = martin.get(f"/fhir/Subscription/{sub['id']}").json
    assert back["status"] == "active" and "error" not in back


def test_an_error_answer_and_a_redirect_are_failures(actor, worker, sub_app):
    martin = actor("dr-martin")
    for status in (500, 302):
        receiver = Receiver(status=status).start()
        try:
            sub = subscribe(martin, HELENE_DOCS, receiver.url(f"/{status}"))
            add_document(martin)
            assert worker.drain(10)
            assert len(receiver.requests) == MAX_ATTEMPTS  # tried, never followed elsewhere
            error = martin.get(f"/fhir/Subscription/{sub['id']}").json["error"]
            assert error.endswith(f"HTTP {status}" + (" (redirects are not followed)" if status == 302 else ""))
            martin.delete(f"/fhir/Subscription/{sub['id']}")
        finally:
            receiver.stop()


def test_a_transaction_is_notified_only_after_its_commit(actor, worker, receiver, sub_app):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url(), payload="application/fhir+json")
    services = sub_app.extensions["dmp"]
    repository, outbox = services.repository, services.subscriptions.outbox
    queued_at = {}
    repository.fault_point = lambda step: queued_at.setdefault(step, outbox.count_documents({}))
    try:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:6c9e5f0e-1d0b-4d57-9a34-0b8f3a1e2c11", "resource": document("helene", "Practitioner/dr-martin"),
             "request": {"method": "POST", "url": "DocumentReference"}},
        ]}
        response = martin.post("/fhir", json=bundle)
        assert response.status_code == 200, response.json
    finally:
        repository.fault_point = lambda step: None
    assert queued_at["locked"] == 0 and queued_at["committed"] == 0  # nothing before the commit is applied
    assert outbox.count_documents({}) == 1
    # a transaction that fails (here on a version precondition) queues nothing
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": document("helene", "Practitioner/dr-martin", "Jamais écrit"), "request": {"method": "POST", "url": "DocumentReference"}},
        {"resource": {**repository.read("Patient", "helene").resource}, "request": {"method": "PUT", "url": "Patient/helene", "ifMatch": 'W/"999"'}},
    ]}
    assert martin.post("/fhir", json=failing).status_code == 412
    assert outbox.count_documents({}) == 1
    assert worker.drain(10)
    [hit] = receiver.requests
    assert json.loads(hit["body"])["id"] == response.json["entry"][0]["response"]["location"].split("/")[1]


def test_the_background_worker_delivers_on_its_own(mongo_uri, receiver):
    from tests.policy.conftest import ActorClient, mint

    settings = SubscriptionSettings(worker=True, allow_loopback=True, poll_seconds=0.2, backoff_seconds=0.05)
    app = make_app(mongo_uri, settings)
    services = app.extensions["dmp"]
    try:
        assert services.subscriptions.worker.running
        martin = ActorClient(app.test_client(), mint(app, "dr-martin"))
        subscribe(martin, HELENE_DOCS, receiver.url())
        add_document(martin)
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(receiver.requests) == 1
    finally:
        services.subscriptions.worker.stop()
        services.repository.db.client.drop_database(app.config["DMP_SETTINGS"].database)


def test_criteria_without_a_patient_notify_only_what_the_subscriber_may_read(actor, worker, receiver, sub_app):
    """`DocumentReference?status=current` from a patient app: every new document matches, and the
    access policy keeps only hers."""
    subscribe(actor("helene"), "DocumentReference?status=current", receiver.url(), payload="application/fhir+json")
    martin = actor("dr-martin")
    hers = add_document(martin, patient="helene")
    add_document(martin, patient="paul")
    assert sub_app.extensions["dmp"].subscriptions.outbox.count_documents({}) == 2
    assert worker.drain(10)
    assert [json.loads(r["body"])["id"] for r in receiver.requests] == [hers["id"]]


def test_an_ended_subscription_is_not_notified(actor, worker, receiver, sub_app):
    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url(), end="2020-01-01T00:00:00Z")
    add_document(martin)
    assert sub_app.extensions["dmp"].subscriptions.outbox.count_documents({}) == 0
    assert worker.drain(10) and receiver.requests == []


def test_a_delivery_left_half_way_by_a_dead_worker_is_taken_again(actor, worker, receiver, sub_app):
    from datetime import datetime, timedelta, timezone

    martin = actor("dr-martin")
    subscribe(martin, HELENE_DOCS, receiver.url())
    add_document(martin)
    outbox = sub_app.extensions["dmp"].subscriptions.outbox
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=5)
    outbox.update_many({}, {"$set": {"state": "delivering", "lease_until": long_ago}})  # its worker died
    assert worker.drain(10)
    assert len(receiver.requests) == 1


def test_routing_copies_are_rebuilt_at_start_up(actor, sub_app):
    martin = actor("dr-martin")
    sub = subscribe(martin, HELENE_DOCS, "https://hooks.example.fr/dmp")
    services = sub_app.extensions["dmp"].subscriptions
    key = f"Subscription/{sub['id']}"
    services.records.update_one({"_id": key}, {"$set": {"rt": None, "live": False}})  # died before routing
    services.rebuild()
    record = services.records.find_one({"_id": key})
    assert (record["rt"], record["live"], record["patients"]) == ("DocumentReference", True, ["Patient/helene"])
