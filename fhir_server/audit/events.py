"""AuditEvent builders, shaped after the IHE Basic Audit Log Patterns (BALP)."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

from fhir_server.storage.repository import fhir_instant

AUDIT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
TRE_R248 = "https://mos.esante.gouv.fr/NOS/TRE_R248_ModeAcces/FHIR/TRE-R248-ModeAcces"
SECURITY_SUBTYPE = "https://github.com/dmp-fhir/CodeSystem/security-event"
OBSERVER = {"display": "dmp-fhir", "type": "Device"}
VIHF_MODE = {"BTG": "bris_de_glace", "ETREAT": "centre_15", "TREAT": "normal"}

ACTIONS = {
    "read": "R", "vread": "R", "history-instance": "R", "history-type": "R", "history-system": "R",
    "search-type": "E", "search-system": "E", "operation": "E", "create": "C", "update": "U",
    "patch": "U", "delete": "D", "transaction": "E", "batch": "E",
}


def outcome_code(status: int) -> str:
    """0 success, 4 minor failure (refused or bad request), 8 serious failure (server error)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def agents(principal, network_address: str | None) -> list[dict]:
    """agent[user] (who acted, with role and purpose) and agent[client] (the OAuth client application)."""
    user: dict = {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "requestor": True,
    }
    if principal is None:
        user["who"] = {"display": "unauthenticated caller"}
    else:
        if principal.fhir_user:
            user["who"] = {"reference": principal.fhir_user}
        else:
            user["who"] = {"identifier": {"system": "urn:dmp-fhir:client", "value": principal.client_id}}
        user["name"] = principal.kind
        roles = [{"coding": [{"system": s, "code": c}]} for s, c in principal.professions if s and c]
        if roles:
            user["role"] = roles
        purposes = []
        for purpose in principal.purpose_of_use:
            codings = [{"system": ACT_REASON, "code": purpose}]
            if purpose in VIHF_MODE:
                codings.append({"system": TRE_R248, "code": VIHF_MODE[purpose]})
            purposes.append({"coding": codings, **({"text": principal.break_the_glass_reason} if purpose == "BTG" and principal.break_the_glass_reason else {})})
        if purposes:
            user["purposeOfUse"] = purposes
        if principal.token_id:
            user["policy"] = [f"urn:ietf:params:oauth:jti:{principal.token_id}"]
    if network_address:
        user["network"] = {"address": network_address, "type": "2"}
    out = [user]
    if principal is not None:
        out.append(
            {
                "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                "who": {"identifier": {"system": "urn:dmp-fhir:client", "value": principal.client_id}},
                "requestor": False,
            }
        )
    return out


def rest_event(
    *,
    interaction: str,
    status: int,
    principal,
    network_address: str | None,
    resources: list[str],
    patients: list[str],
    query: str | None = None,
    description: str | None = None,
    now: datetime | None = None,
) -> dict:
    """One REST interaction (BALP Read / Query / Create / Update / Delete, patient variants)."""
    now = now or datetime.now(timezone.utc)
    entities = [
        {
            "what": {"reference": p},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for p in sorted(set(patients))
    ]
    for ref in resources:
        entities.append(
            {
                "what": {"reference": ref},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
            }
        )
    if query is not None:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(query.encode()).decode("ascii"),
                "description": query,
            }
        )
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": AUDIT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL, "code": interaction}],
        "action": ACTIONS.get(interaction, "E"),
        "recorded": fhir_instant(now),
        "outcome": outcome_code(status),
        "outcomeDesc": description or f"HTTP {status}",
        "agent": agents(principal, network_address),
        "source": {"site": "dmp-fhir", "observer": OBSERVER,
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}]},
    }
    if principal is not None and principal.purpose_of_use:
        event["purposeOfEvent"] = [{"coding": [{"system": ACT_REASON, "code": p}]} for p in principal.purpose_of_use]
    if entities:
        event["entity"] = entities
    return event


def security_event(*, what: str, status: int, principal, network_address: str | None, client_id: str | None,
                   user: str | None = None, now: datetime | None = None) -> dict:
    """Login, token issued/refused/revoked, client registration, launch: type 110113 Security Alert."""
    now = now or datetime.now(timezone.utc)
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": "110113", "display": "Security Alert"},
        "subtype": [{"system": SECURITY_SUBTYPE, "code": what}],
        "action": "E",
        "recorded": fhir_instant(now),
        "outcome": outcome_code(status),
        "outcomeDesc": f"HTTP {status}",
        "agent": agents(principal, network_address),
        "source": {"site": "dmp-fhir", "observer": OBSERVER},
    }
    if client_id:
        event["agent"].append({"type": {"coding": [{"system": DCM, "code": "110150"}]},
                               "who": {"identifier": {"system": "urn:dmp-fhir:client", "value": client_id}},
                               "requestor": False})
    if user:
        event["agent"][0]["altId"] = user
    return event
