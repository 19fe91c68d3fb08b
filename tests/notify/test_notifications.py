"""E-mail notifications received by a real SMTP server on loopback (aiosmtpd); never medical content."""

from __future__ import annotations

import email
import email.policy
import socket
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.notify import SmtpSettings
from tests.policy.conftest import ActorClient, mint, world


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = f"{message['Subject']}\n{message.get_content()}"  # decoded, whatever the transfer encoding
        self.messages.append((envelope.rcpt_tos, text))
        return "250 OK"


@pytest.fixture(scope="module")
def inbox():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    handler = Inbox()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def notifying_app(mongo_uri, inbox):
    _, port = inbox
    settings = Settings(mongodb_uri=mongo_uri, database=f"dmp_notify_{uuid.uuid4().hex[:8]}", testing=True,
                        smtp=SmtpSettings(host="127.0.0.1", port=port, sender="dmp@example.org"))
    app = create_app(settings)
    repo = app.extensions["dmp"].repository
    for resource in world():
        if resource["id"] == "helene":
            resource["telecom"] = [{"system": "email", "value": "helene@example.org"}]
        if resource["id"] == "dr-martin":
            resource["telecom"] = [{"system": "email", "value": "dr.martin@example.org"}]
        repo.update(resource["resourceType"], resource["id"], resource)
    yield app
    repo.db.client.drop_database(settings.database)


def actor(app, name):
    return ActorClient(app.test_client(), mint(app, name))


def received(inbox, app, address):
    app.extensions["dmp"].notifier.flush()
    return [body for rcpt, body in inbox[0].messages if address in rcpt]


def test_patient_is_told_a_document_was_added_without_medical_content(notifying_app, inbox):
    doc = {
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "68599-0"}]},
        "description": "Synthèse psychiatrique confidentielle",
        "subject": {"reference": "Patient/helene"}, "author": [{"reference": "Practitioner/dr-martin"}],
        "content": [{"attachment": {"contentType": "text/plain", "title": "Synthèse psychiatrique"}}],
    }
    before = len(received(inbox, notifying_app, "helene@example.org"))
    assert actor(notifying_app, "dr-martin").post("/fhir/DocumentReference", json=doc).status_code == 201
    mails = received(inbox, notifying_app, "helene@example.org")[before:]
    assert len(mails) == 1
    assert "nouveau document" in mails[0]
    for secret in ("psychiatri", "68599", "Synthèse", "Martin"):
        assert secret not in mails[0]


def test_emergency_access_is_told_to_the_patient_and_the_gp(notifying_app, inbox):
    before_patient = len(received(inbox, notifying_app, "helene@example.org"))
    before_gp = len(received(inbox, notifying_app, "dr.martin@example.org"))
    assert actor(notifying_app, "dr-urgence").get("/fhir/DocumentReference/doc-cr").status_code == 200
    patient_mails = received(inbox, notifying_app, "helene@example.org")[before_patient:]
    gp_mails = received(inbox, notifying_app, "dr.martin@example.org")[before_gp:]
    assert len(patient_mails) == 1 and "urgence" in patient_mails[0]
    assert len(gp_mails) == 1 and "urgence" in gp_mails[0]


def test_ordinary_reads_send_nothing(notifying_app, inbox):
    before = len(inbox[0].messages)
    actor(notifying_app, "dr-martin").get("/fhir/DocumentReference/doc-cr")
    notifying_app.extensions["dmp"].notifier.flush()
    assert len(inbox[0].messages) == before


def test_invisible_document_notice_after_two_weeks_once(notifying_app, inbox):
    notifier = notifying_app.extensions["dmp"].notifier
    repo = notifying_app.extensions["dmp"].repository
    repo.resources.update_one({"_id": "DocumentReference/doc-invisible"},
                              {"$set": {"cts": datetime.now(timezone.utc) - timedelta(days=15)}})
    before = len(received(inbox, notifying_app, "helene@example.org"))
    assert notifier.notify_invisible_documents(datetime.now(timezone.utc) - timedelta(days=14)) == 1
    assert notifier.notify_invisible_documents(datetime.now(timezone.utc) - timedelta(days=14)) == 0
    mails = received(inbox, notifying_app, "helene@example.org")[before:]
    assert len(mails) == 1 and "consultation d'annonce" in mails[0]
