"""Every access is traced (BALP-shaped AuditEvents), append-only, hash-chained, and fail-closed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fhir_server.cli import main
from tests.policy.conftest import ACTORS  # noqa: F401  (the DMP world and its actors)


def events_for(app, **match):
    repo = app.extensions["dmp"].repository
    docs = repo.find_docs({"rt": "AuditEvent", "state": "live"}, {"res": 1}, sort=[("ts", 1), ("_id", 1)])
    out = [d["res"] for d in docs]
    return out


def last_event(app):
    return events_for(app)[-1]


def agent_user(event):
    return next(a for a in event["agent"] if a.get("requestor"))


def entity_refs(event):
    return [e.get("what", {}).get("reference") for e in event.get("entity", []) if e.get("what")]


@pytest.mark.parametrize(
    "actor, expected_who",
    [("helene", "Patient/helene"), ("dr-martin", "Practitioner/dr-martin"), ("vendor", None)],
)
def test_read_is_traced_with_agent_entity_action_and_outcome(dmp_app, as_actor, actor, expected_who):
    client = as_actor(actor)
    assert client.get("/fhir/DocumentReference/doc-psy").status_code == 200
    event = last_event(dmp_app)
    assert event["subtype"][0]["code"] == "read" and event["action"] == "R" and event["outcome"] == "0"
    user = agent_user(event)
    if expected_who:
        assert user["who"]["reference"] == expected_who
    else:
        assert user["who"]["identifier"]["value"] == "client-vendor"
    assert user["network"]["address"] == "127.0.0.1"
    client_agent = next(a for a in event["agent"] if not a.get("requestor"))
    assert client_agent["who"]["identifier"]["value"] == f"client-{actor}"
    assert "DocumentReference/doc-psy" in entity_refs(event) and "Patient/helene" in entity_refs(event)
    if actor == "dr-martin":
        assert user["role"][0]["coding"][0]["code"] == "10"


def test_search_is_one_event_naming_the_patients_and_the_query(dmp_app, as_actor):
    before = len(events_for(dmp_app))
    as_actor("dr-martin").get("/fhir/DocumentReference?patient=helene&type=68599-0")
    new = events_for(dmp_app)[before:]
    assert len(new) == 1
    event = new[0]
    assert event["subtype"][0]["code"] == "search-type" and event["action"] == "E"
    query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
    assert "type=68599-0" in query["description"]
    assert "Patient/helene" in entity_refs(event)


def test_refused_and_unauthenticated_requests_are_traced(dmp_app, as_actor):
    as_actor("dr-blocked").post("/fhir/DocumentReference", json={
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/helene"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "content": [{"attachment": {"contentType": "text/plain"}}]})
    event = last_event(dmp_app)
    assert event["action"] == "C" and event["outcome"] == "4"
    assert "blocked" in event["outcomeDesc"]
    dmp_app.test_client().get("/fhir/Patient/helene")
    event = last_event(dmp_app)
    assert event["outcome"] == "4" and agent_user(event)["who"]["display"] == "unauthenticated caller"


def test_break_the_glass_is_traced_with_reason_and_purpose(dmp_app, as_actor):
    as_actor("dr-urgence").get("/fhir/DocumentReference/doc-masked")
    event = last_event(dmp_app)
    user = agent_user(event)
    codes = {c["code"] for p in user["purposeOfUse"] for c in p["coding"]}
    assert {"BTG", "bris_de_glace"} <= codes
    assert user["purposeOfUse"][0]["text"] == "Patient inconscient aux urgences"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"


def test_transaction_is_one_event_per_entry_plus_one_for_the_bundle(dmp_app, as_actor):
    before = len(events_for(dmp_app))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "DocumentReference/doc-cr"}},
        {"request": {"method": "GET", "url": "DocumentReference/doc-attest"}},
    ]}
    as_actor("dr-martin").post("/fhir", json=bundle)
    new = events_for(dmp_app)[before:]
    assert len(new) == 3
    assert new[0]["subtype"][0]["code"] == "batch"
    outcomes = [e["outcome"] for e in new[1:]]
    assert outcomes == ["0", "4"]  # the GP may not see ATTEST-RESID (matrix): refused, and traced


def test_audit_events_are_append_only_through_the_api(dmp_app, as_actor):
    client = as_actor("vendor", "system/*.cruds")
    event = events_for(dmp_app)[-1]
    assert client.put(f"/fhir/AuditEvent/{event['id']}", json=event).status_code == 405
    assert client.delete(f"/fhir/AuditEvent/{event['id']}").status_code == 405
    assert client.patch(f"/fhir/AuditEvent/{event['id']}", [{"op": "remove", "path": "/agent"}]).status_code == 405


def test_operator_searches_the_trail(dmp_app, as_actor):
    as_actor("dr-martin").get("/fhir/DocumentReference/doc-psy")
    client = as_actor("vendor", "system/AuditEvent.rs")
    bundle = client.get("/fhir/AuditEvent?patient=Patient/helene&agent=Practitioner/dr-martin&action=R&_sort=-date").json
    assert bundle["total"] >= 1
    dates = [e["resource"]["recorded"] for e in bundle["entry"]]
    assert dates == sorted(dates, reverse=True)


def test_verify_finds_a_tampered_event(dmp_app, mongo_uri):
    trail = dmp_app.extensions["dmp"].audit
    count, problems = trail.verify()
    assert count > 0 and problems == []
    env = {"MONGODB_URI": mongo_uri, "DMP_DATABASE": dmp_app.config["DMP_SETTINGS"].database}
    assert CliRunner().invoke(main, ["audit", "verify"], env=env).exit_code == 0
    victim = events_for(dmp_app)[len(events_for(dmp_app)) // 2]
    repo = dmp_app.extensions["dmp"].repository
    original = repo.audit.find_one({"_id": f"AuditEvent/{victim['id']}"})["res"]
    repo.audit.update_one({"_id": f"AuditEvent/{victim['id']}"}, {"$set": {"res.outcome": "0", "res.action": "D"}})
    try:
        count, problems = trail.verify()
        assert problems and victim["id"] in problems[0] and "altered" in problems[0]
        result = CliRunner().invoke(main, ["audit", "verify"], env=env)
        assert result.exit_code == 1 and victim["id"] in result.output
    finally:
        repo.audit.update_one({"_id": f"AuditEvent/{victim['id']}"}, {"$set": {"res": original}})


def test_verify_finds_a_deleted_event(dmp_app):
    trail = dmp_app.extensions["dmp"].audit
    chained = [e for e in events_for(dmp_app) if any("audit-hash-chain" in x["url"] for x in e.get("extension", []))]
    victim = chained[len(chained) // 2]
    repo = dmp_app.extensions["dmp"].repository
    saved = repo.audit.find_one({"_id": f"AuditEvent/{victim['id']}"})
    repo.audit.delete_one({"_id": saved["_id"]})
    try:
        _, problems = trail.verify()
        assert problems and "missing" in problems[0]
    finally:
        repo.audit.insert_one(saved)


def test_audit_write_failure_refuses_the_read(dmp_app, as_actor):
    trail = dmp_app.extensions["dmp"].audit
    trail.fault = ConnectionError("database down")
    try:
        response = as_actor("helene").get("/fhir/DocumentReference/doc-psy")
    finally:
        trail.fault = None
    assert response.status_code == 500
    body = response.json
    assert body["resourceType"] == "OperationOutcome" and "audited" in body["issue"][0]["diagnostics"]
    assert "doc-psy" not in response.get_data(as_text=True)


def test_export_as_ndjson(dmp_app, mongo_uri):
    env = {"MONGODB_URI": mongo_uri, "DMP_DATABASE": dmp_app.config["DMP_SETTINGS"].database}
    result = CliRunner().invoke(main, ["audit", "export", "--since", "2000-01-01"], env=env)
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert lines and all(e["resourceType"] == "AuditEvent" for e in lines)


WRITERS = {
    "helene": ("Patient/helene", "patient/*.cruds"),
    "dr-martin": ("Practitioner/dr-martin", "user/*.cruds"),
    "vendor": ("Practitioner/dr-author", "system/*.cruds"),
}


@pytest.mark.parametrize("actor", sorted(WRITERS))
def test_each_interaction_produces_its_event(dmp_app, as_actor, actor):
    author, scopes = WRITERS[actor]
    client = as_actor(actor, scopes)
    doc = {
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
        "subject": {"reference": "Patient/helene"}, "author": [{"reference": author}],
        "content": [{"attachment": {"contentType": "text/plain", "title": "Synthèse"}}],
    }
    steps = []

    def step(name, response, action, interaction, outcome="0"):
        event = last_event(dmp_app)
        steps.append(name)
        assert event["subtype"][0]["code"] == interaction, (name, event["subtype"])
        assert event["action"] == action and event["outcome"] == outcome, (name, event["action"], event["outcome"])
        assert next(a for a in event["agent"] if not a.get("requestor"))["who"]["identifier"]["value"] == f"client-{actor}"
        return response

    created = step("create", client.post("/fhir/DocumentReference", json=doc), "C", "create").json
    ref = f"DocumentReference/{created['id']}"
    assert ref in entity_refs(last_event(dmp_app)) and "Patient/helene" in entity_refs(last_event(dmp_app))
    step("read", client.get(f"/fhir/{ref}"), "R", "read")
    step("vread", client.get(f"/fhir/{ref}/_history/1"), "R", "vread")
    step("history", client.get(f"/fhir/{ref}/_history"), "R", "history-instance")
    step("search", client.get("/fhir/DocumentReference?patient=helene"), "E", "search-type")
    step("everything", client.get("/fhir/Patient/helene/$everything"), "E", "operation")
    if actor != "helene":  # a patient masks, but does not change the status of, a document
        step("patch", client.patch(f"/fhir/{ref}", [{"op": "replace", "path": "/status", "value": "superseded"}]), "U", "patch")
    step("delete", client.delete(f"/fhir/{ref}"), "D", "delete")
    step("read-gone", client.get(f"/fhir/{ref}"), "R", "read", outcome="4")
