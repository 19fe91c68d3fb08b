"""A DMP world with authentication on, a delivery worker driven by the tests, and real webhook
receivers (http.server on 127.0.0.1) that record what the server sends them."""

from __future__ import annotations

import http.server
import socket
import threading
import uuid

import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.subscriptions import SubscriptionSettings
from tests.policy.conftest import ActorClient, mint, world

MAX_ATTEMPTS = 3
FAST = SubscriptionSettings(
    worker=False, allow_loopback=True, max_attempts=MAX_ATTEMPTS, backoff_seconds=0.02, backoff_max_seconds=0.1,
    timeout_seconds=2, poll_seconds=0.05,
)


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class Receiver:
    """A webhook endpoint on a fixed loopback port that can be taken down and brought back."""

    def __init__(self, status: int = 200):
        self.port = free_port()
        self.status = status
        self.requests: list[dict] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append({
                    "method": self.command, "path": self.path, "headers": dict(self.headers),
                    "body": self.rfile.read(length) if length else b"",
                })
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def at(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(path)]


@pytest.fixture()
def receiver():
    rec = Receiver().start()
    yield rec
    rec.stop()


def make_app(mongo_uri, subscriptions: SubscriptionSettings = FAST):
    settings = Settings(mongodb_uri=mongo_uri, database=f"dmp_subs_{uuid.uuid4().hex[:8]}", testing=True,
                        subscriptions=subscriptions)
    app = create_app(settings)
    repository = app.extensions["dmp"].repository
    for resource in world():
        repository.update(resource["resourceType"], resource["id"], resource)
    return app


@pytest.fixture(scope="module")
def sub_app(mongo_uri):
    app = make_app(mongo_uri)
    yield app
    services = app.extensions["dmp"]
    services.subscriptions.worker.stop()
    services.repository.db.client.drop_database(app.config["DMP_SETTINGS"].database)


@pytest.fixture(autouse=True)
def _no_subscriptions_left(request):
    """Each test starts without subscriptions or queued notifications."""
    if "sub_app" not in request.fixturenames:
        yield
        return
    services = request.getfixturevalue("sub_app").extensions["dmp"]
    db = services.repository.db
    db["resources"].delete_many({"rt": "Subscription"})
    db["history"].delete_many({"rt": "Subscription"})
    db["subscriptions"].delete_many({})
    db["subscription_outbox"].delete_many({})
    yield


@pytest.fixture(scope="module")
def actor(sub_app):
    def make(name: str, scopes: str | None = None) -> ActorClient:
        return ActorClient(sub_app.test_client(), mint(sub_app, name, scopes))

    return make


@pytest.fixture()
def worker(sub_app):
    return sub_app.extensions["dmp"].subscriptions.worker


def subscription(criteria: str, endpoint: str, payload: str | None = None, headers=(), **extra) -> dict:
    channel = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if headers:
        channel["header"] = list(headers)
    return {"resourceType": "Subscription", "status": "requested", "reason": "Nouveaux documents du dossier",
            "criteria": criteria, "channel": channel, **extra}


def document(patient: str, author: str, title: str = "Compte rendu", loinc: str = "11488-4") -> dict:
    return {
        "resourceType": "DocumentReference", "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "description": title,
        "subject": {"reference": f"Patient/{patient}"}, "author": [{"reference": author}],
        "date": "2024-05-02T10:00:00+02:00",
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}],
        "content": [{"attachment": {"contentType": "text/plain", "title": title}}],
    }
