"""The audit trail: one AuditEvent per interaction that touches patient data and per security
event, written by the server only, hash-chained, and recorded before the response leaves.

One mechanism records everything (`install`): an `after_request` hook on the application that
knows every FHIR endpoint and every authorization-server endpoint, so a new interaction cannot
forget to audit. If the event cannot be stored the caller gets a 500 OperationOutcome instead of
the data (fail closed).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime

from flask import Flask, Response, g, request

from fhir_server.audit import events
from fhir_server.audit.chain import ChainWriter, chain_info, verify
from fhir_server.storage.repository import Repository

log = logging.getLogger(__name__)

# FHIR endpoint (blueprint function) -> audited interaction
FHIR_INTERACTIONS = {
    "batch_or_transaction": "transaction",
    "history_system": "history-system",
    "search_system": "search-system",
    "search_system_post": "search-system",
    "search_type": "search-type",
    "search_type_get": "search-type",
    "search_type_post": "search-type",
    "compartment_search": "search-type",
    "patient_everything": "operation",
    "validate": "operation",
    "create": "create",
    "conditional_update": "update",
    "conditional_patch": "patch",
    "conditional_delete": "delete",
    "history_type": "history-type",
    "read": "read",
    "read_binary": "read",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
    "history_instance": "history-instance",
    "vread": "vread",
}
# Authorization-server endpoints that are security events (POST only: GETs show forms)
SECURITY_ENDPOINTS = {"token": "token", "revoke": "revoke", "register": "client-registration",
                      "login": "login", "otp": "login-second-factor", "consent": "consent-decision",
                      "launch": "ehr-launch", "introspect": "introspection"}
ENTRY_INTERACTION = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


class AuditTrail:
    def __init__(self, repository: Repository, enabled: bool = True, listeners=()):
        self.repository = repository
        self.enabled = enabled
        self.listeners = list(listeners)  # e.g. the notifier: called after an event is stored
        self.writer = ChainWriter()
        # test hook: raise here to simulate a database fault
        self.fault = None

    def record(self, event: dict) -> str:
        event.setdefault("id", uuid.uuid4().hex)
        if self.enabled:
            self.writer.link(event, self._write)
        for listener in self.listeners:
            listener(event)
        return event["id"]

    def _write(self, event: dict) -> None:
        if self.fault is not None:
            raise self.fault
        self.repository.append_immutable("AuditEvent", event["id"], event)

    # ------------------------------------------------------------------ operator tools
    def iter_events(self, since: datetime | None = None) -> Iterator[dict]:
        query: dict = {"rt": "AuditEvent", "state": "live"}
        if since:
            query["ts"] = {"$gte": since}
        for doc in self.repository.find_docs(query, {"res": 1}, sort=[("ts", 1), ("_id", 1)]):
            yield doc["res"]

    def verify(self) -> tuple[int, list[str]]:
        """(events checked, problems) over every chain in the database."""
        chains: dict[str, list[dict]] = {}
        count = 0
        for event in self.iter_events():
            info = chain_info(event)
            count += 1
            if info is None:
                chains.setdefault("(unchained)", []).append(event)
                continue
            chains.setdefault(info["chain"], []).append(event)
        problems = [f"AuditEvent/{e.get('id')} carries no hash chain" for e in chains.pop("(unchained)", [])]
        return count, problems + verify(chains)

    def purge(self, before: datetime) -> int:
        """Retention: remove events recorded before `before` (verification restarts at the oldest kept)."""
        result = self.repository.resources.delete_many({"rt": "AuditEvent", "ts": {"$lt": before}})
        return result.deleted_count


def _patients(resource: dict | None) -> list[str]:
    if not isinstance(resource, dict):
        return []
    if resource.get("resourceType") == "Patient" and resource.get("id"):
        return [f"Patient/{resource['id']}"]
    refs = []
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            refs.append(ref)
    return refs


def _ref(resource: dict) -> str | None:
    if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
        return f"{resource['resourceType']}/{resource['id']}"
    return None


def _network_address() -> str | None:
    return request.remote_addr


def _principal():
    return g.get("_dmp_principal") or g.get("dmp_open_principal")


def fhir_events(endpoint: str, response: Response) -> list[dict]:
    interaction = FHIR_INTERACTIONS[endpoint]
    result = g.get("dmp_result")
    principal = _principal()
    address = _network_address()
    status = response.status_code
    view = request.view_args or {}
    resources: list[str] = []
    patients: list[str] = []
    body = result.resource if result is not None else None
    query = request.query_string.decode() or None
    out: list[dict] = []
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        kind = body.get("type")
        for entry in body.get("entry", []):
            res = entry.get("resource")
            if _ref(res):
                resources.append(_ref(res))
                patients += _patients(res)
        if kind in ("transaction-response", "batch-response"):
            interaction = "transaction" if kind == "transaction-response" else "batch"
            out += _entry_events(body, principal, address)
    elif isinstance(body, dict) and body.get("resourceType") not in (None, "OperationOutcome"):
        if _ref(body):
            resources.append(_ref(body))
        patients += _patients(body)
    if not resources and view.get("rt") and view.get("rid"):
        resources.append(f"{view['rt']}/{view['rid']}")
    if endpoint in ("patient_everything", "compartment_search") and view.get("rid"):
        patients.append(f"Patient/{view['rid']}")
    if view.get("rt") == "Patient" and view.get("rid"):
        patients.append(f"Patient/{view['rid']}")
    is_query = interaction.startswith(("search", "history")) or interaction == "operation"
    description = f"{request.method} {request.path} -> {status}"
    access = g.get("dmp_access")
    if access is not None and access.decisions:
        rules = sorted({d.rule for d in access.decisions if not d.allowed}) or sorted({d.rule for d in access.decisions})
        description += f" (policy: {', '.join(rules)})"
    event = events.rest_event(
        interaction=interaction, status=status, principal=principal, network_address=address,
        resources=(resources[:50] if status < 400 else []) if is_query else resources[:1],
        patients=patients,
        query=(f"{request.path}?{query}" if query else request.path) if is_query else None,
        description=description,
    )
    return [event] + out


def _entry_events(bundle: dict, principal, address) -> list[dict]:
    request_bundle = g.get("dmp_request_bundle") or {}
    requests = [e.get("request", {}) for e in request_bundle.get("entry", [])]
    out = []
    for i, entry in enumerate(bundle.get("entry", [])):
        req = requests[i] if i < len(requests) else {}
        response = entry.get("response", {})
        status = int(str(response.get("status", "200")).split()[0])
        res = entry.get("resource")
        ref = _ref(res) or (response.get("location") or "").split("/_history")[0] or None
        interaction = ENTRY_INTERACTION.get(req.get("method", "GET"), "read")
        if interaction == "read" and "?" in req.get("url", ""):
            interaction = "search-type"
        out.append(
            events.rest_event(
                interaction=interaction, status=status, principal=principal, network_address=address,
                resources=[ref] if ref else [], patients=_patients(res),
                description=f"Bundle.entry[{i}] {req.get('method')} {req.get('url')} -> {status}",
            )
        )
    return out


def install(app: Flask, trail: AuditTrail) -> None:
    """Record every audited request after it is handled and before its response leaves."""
    from fhir_server.api.negotiation import fhir_response
    from fhir_server.fhir.errors import Issue, operation_outcome
    from fhir_server.interactions.context import Result

    @app.after_request
    def _audit(response: Response) -> Response:
        endpoint = request.endpoint or ""
        blueprint, _, name = endpoint.rpartition(".")
        if getattr(g, "dmp_public", False):
            return response  # the server's own description (metadata, profiles): no record touched
        try:
            if blueprint == "fhir" and name in FHIR_INTERACTIONS:
                for event in fhir_events(name, response):
                    trail.record(event)
            elif name in SECURITY_ENDPOINTS and request.method == "POST" and blueprint != "fhir":
                status = response.status_code
                if name == "login" and status == 200:
                    status = 401  # the form came back: the login failed
                trail.record(
                    events.security_event(
                        what=SECURITY_ENDPOINTS[name], status=status, principal=_principal(),
                        network_address=_network_address(),
                        client_id=request.form.get("client_id") or (request.authorization.username if request.authorization else None),
                        user=request.form.get("username") if name == "login" else None,
                    )
                )
        except Exception:
            log.exception("audit record could not be written: refusing the response")
            issue = Issue("The access could not be audited, so it was refused. Retry later.", "exception", "fatal")
            return fhir_response(Result(500, operation_outcome([issue])))
        return response


__all__ = ["AuditTrail", "install"]
