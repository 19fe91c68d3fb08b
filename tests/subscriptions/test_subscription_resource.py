"""The Subscription resource: what is accepted (422 otherwise), the server-owned status, and who
may see and change a subscription (its owner only)."""

from __future__ import annotations

import pytest

from tests.subscriptions.conftest import make_app, subscription

HOOK = "https://hooks.example.fr/dmp"


def _issue(response) -> dict:
    assert response.status_code == 422, response.json
    assert response.json["resourceType"] == "OperationOutcome"
    return response.json["issue"][0]


def test_a_requested_rest_hook_subscription_is_accepted_as_active(actor):
    sent = subscription("DocumentReference?patient=Patient/helene&status=current", HOOK,
                        error="left by the client")
    created = actor("dr-martin").post("/fhir/Subscription", json=sent)
    assert created.status_code == 201, created.json
    assert created.json["status"] == "active"
    assert "error" not in created.json  # server-owned
    again = actor("dr-martin").get(f"/fhir/Subscription/{created.json['id']}")
    assert again.status_code == 200 and again.json["status"] == "active"


@pytest.mark.parametrize("channel_type", ["websocket", "email", "sms", "message", "fax"])
def test_channels_other_than_rest_hook_are_refused_naming_the_element(actor, channel_type):
    sent = subscription("DocumentReference?patient=Patient/helene", "mailto:dr.martin@example.fr")
    sent["channel"]["type"] = channel_type
    issue = _issue(actor("dr-martin").post("/fhir/Subscription", json=sent))
    assert issue["expression"] == ["Subscription.channel.type"]
    assert channel_type in issue["diagnostics"]


@pytest.mark.parametrize("criteria, words", [
    ("Observation?patient=Patient/helene", "unknown resource type 'Observation'"),
    ("DocumentReference?colour=blue", "colour"),
    ("DocumentReference?date=not-a-date", "date"),
    ("DocumentReference?patient=Patient/helene&_sort=date", "_sort"),
    ("AuditEvent?patient=Patient/helene", "AuditEvent"),
    ("Subscription?status=active", "Subscription"),
    ("patient=Patient/helene", "Type?parameters"),
])
def test_criteria_the_search_engine_does_not_understand_are_refused(actor, criteria, words):
    issue = _issue(actor("dr-martin").post("/fhir/Subscription", json=subscription(criteria, HOOK)))
    assert issue["expression"] == ["Subscription.criteria"]
    assert words in issue["diagnostics"]


@pytest.mark.parametrize("endpoint", ["ftp://hooks.example.fr/x", "hooks.example.fr/x", "https://user:pw@hooks.example.fr/x"])
def test_endpoints_are_http_urls_without_credentials(actor, endpoint):
    issue = _issue(actor("dr-martin").post("/fhir/Subscription", json=subscription("DocumentReference?patient=Patient/helene", endpoint)))
    assert issue["expression"] == ["Subscription.channel.endpoint"]


def test_payloads_other_than_fhir_json_and_bad_headers_are_refused(actor):
    sent = subscription("DocumentReference?patient=Patient/helene", HOOK, payload="application/fhir+xml")
    assert _issue(actor("dr-martin").post("/fhir/Subscription", json=sent))["expression"] == ["Subscription.channel.payload"]
    sent = subscription("DocumentReference?patient=Patient/helene", HOOK, headers=["Host: evil.example"])
    assert _issue(actor("dr-martin").post("/fhir/Subscription", json=sent))["expression"] == ["Subscription.channel.header[0]"]
    sent = subscription("DocumentReference?patient=Patient/helene", HOOK, headers=["no colon here"])
    assert _issue(actor("dr-martin").post("/fhir/Subscription", json=sent))["expression"] == ["Subscription.channel.header[0]"]


def test_a_subscription_needs_search_rights_on_its_criteria_type(actor):
    client = actor("dr-martin", "user/Subscription.cruds user/Patient.rs")
    response = client.post("/fhir/Subscription", json=subscription("DocumentReference?patient=Patient/helene", HOOK))
    assert response.status_code == 403


def test_loopback_endpoints_are_refused_unless_configured(mongo_uri):
    from fhir_server.subscriptions import SubscriptionSettings
    from tests.policy.conftest import ActorClient, mint

    app = make_app(mongo_uri, SubscriptionSettings(worker=False))
    try:
        client = ActorClient(app.test_client(), mint(app, "dr-martin"))
        for endpoint in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook"):
            issue = _issue(client.post("/fhir/Subscription", json=subscription("DocumentReference?patient=Patient/helene", endpoint)))
            assert "loopback" in issue["diagnostics"]
    finally:
        app.extensions["dmp"].repository.db.client.drop_database(app.config["DMP_SETTINGS"].database)


def test_turning_off_and_back_on_is_the_clients_status_and_error_stays_server_owned(actor, sub_app):
    owner = actor("dr-martin")
    created = owner.post("/fhir/Subscription", json=subscription("DocumentReference?patient=Patient/helene", HOOK)).json
    off = owner.put(f"/fhir/Subscription/{created['id']}", json={**created, "status": "off"})
    assert off.status_code == 200 and off.json["status"] == "off"
    # the worker records a failure (status error + text): a client writing it back keeps them
    services = sub_app.extensions["dmp"]
    on = owner.put(f"/fhir/Subscription/{created['id']}", json={**off.json, "status": "requested"}).json
    assert on["status"] == "active"
    services.subscriptions.set_status(f"Subscription/{created['id']}", "error", "delivery to x failed 3 times: boom")
    current = owner.get(f"/fhir/Subscription/{created['id']}").json
    kept = owner.put(f"/fhir/Subscription/{created['id']}", json={**current, "reason": "Nouveau motif"}).json
    assert kept["status"] == "error" and kept["error"].endswith("boom")
    reset = owner.put(f"/fhir/Subscription/{created['id']}", json={**kept, "status": "requested"}).json
    assert reset["status"] == "active" and "error" not in reset


def test_a_subscription_is_seen_and_changed_by_its_owner_only(actor):
    owner = actor("dr-martin")
    created = owner.post("/fhir/Subscription", json=subscription(
        "DocumentReference?patient=Patient/helene", HOOK, headers=["Authorization: Bearer secret-du-cabinet"])).json
    url = f"/fhir/Subscription/{created['id']}"
    assert owner.get(url).status_code == 200
    for query in ("", "?status=active", "?type=rest-hook", f"?url={HOOK}", "?criteria=DocumentReference"):
        found = owner.get(f"/fhir/Subscription{query}").json.get("entry", [])
        assert [e["resource"]["id"] for e in found] == [created["id"]], query
    assert owner.get("/fhir/Subscription?status=off").json.get("entry", []) == []
    for other in ("dr-other", "helene", "vendor"):
        client = actor(other)
        assert client.get(url).status_code == 404, other
        assert client.get("/fhir/Subscription").json.get("entry", []) == [], other
        assert client.get(f"/fhir/Subscription?_id={created['id']}").json.get("entry", []) == [], other
        assert client.get(f"{url}/_history/1").status_code == 404, other
    for other in ("dr-other", "helene"):
        client = actor(other)
        assert client.put(url, json={**created, "channel": {"type": "rest-hook", "endpoint": "https://evil.example/x"}}).status_code == 404
        assert client.delete(url).status_code == 404
        assert owner.get(url).json["channel"]["endpoint"] == HOOK, other
    assert owner.delete(url).status_code == 204


def test_an_id_owned_by_someone_else_cannot_be_taken_over(actor):
    owner = actor("dr-martin")
    sent = {**subscription("DocumentReference?patient=Patient/helene", HOOK), "id": "sub-cabinet-martin"}
    assert owner.put("/fhir/Subscription/sub-cabinet-martin", json=sent).status_code == 201
    assert owner.delete("/fhir/Subscription/sub-cabinet-martin").status_code == 204
    thief = actor("dr-other")
    taken = thief.put("/fhir/Subscription/sub-cabinet-martin", json={**sent, "channel": {"type": "rest-hook", "endpoint": "https://evil.example/x"}})
    assert taken.status_code == 409


@pytest.mark.parametrize("criteria, patients", [
    ("DocumentReference?patient=Patient/helene", ["Patient/helene"]),
    ("DocumentReference?patient=helene,paul&status=current", ["Patient/helene", "Patient/paul"]),
    ("DocumentReference?subject=http://localhost/fhir/Patient/zoe", ["Patient/zoe"]),
    ("DocumentReference?subject=123", None),  # a bare subject id may be a Group or a Device
    ("DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|248092A203297", None),
    ("DocumentReference?status=current", None),
])
def test_writes_are_routed_to_the_subscriptions_of_their_patients(criteria, patients):
    from fhir_server.subscriptions.resource import criteria_patients, parse_criteria

    assert criteria_patients(parse_criteria(criteria, "http://localhost/fhir")) == patients
