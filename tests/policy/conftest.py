"""A DMP world with realistic actors, documents and consents, and SMART tokens for each actor.

The app runs with authentication on: every request carries a real signed access token minted by
the server's own token service, and the policy decides from what the token says.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from fhir_server.app import create_app
from fhir_server.auth.scopes import ScopeSet
from fhir_server.config import Settings
from tests.conftest import FhirClient, make_patient

TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
LOINC = "http://loinc.org"

NOW = datetime.now(timezone.utc)
LAST_YEAR = (NOW - timedelta(days=365)).strftime("%Y-%m-%d")
NEXT_YEAR = (NOW + timedelta(days=365)).strftime("%Y-%m-%d")


def practitioner(rid, family, rpps):
    return {
        "resourceType": "Practitioner", "id": rid,
        "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
        "name": [{"family": family}],
    }


def document(rid, patient, author, type_code, labels=(), system=LOINC):
    return {
        "resourceType": "DocumentReference", "id": rid, "status": "current",
        "type": {"coding": [{"system": system, "code": type_code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "author": [{"reference": author}],
        "date": "2024-05-02T10:00:00+02:00",
        "securityLabel": [{"coding": [{"system": CONF, "code": "N"}]}]
        + [{"coding": [{"system": TRE_A07, "code": label}]} for label in labels],
        "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/bin-{rid}"}}],
    }


def binary(rid):
    return {"resourceType": "Binary", "id": f"bin-{rid}", "contentType": "text/plain",
            "data": base64.b64encode(f"contenu de {rid}".encode()).decode()}


def consent(rid, patient, kind, actor=None, purposes=("TREAT",), labels=()):
    provision = {"type": kind, "period": {"start": LAST_YEAR, "end": NEXT_YEAR},
                 "purpose": [{"system": ACT_REASON, "code": p} for p in purposes]}
    if actor:
        provision["actor"] = [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": actor},
        }]
    if labels:
        provision["securityLabel"] = [{"system": TRE_A07, "code": c} for c in labels]
    return {
        "resourceType": "Consent", "id": rid, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }


HELENE_DOCS = {
    "doc-cr": ("dr-authorised", "11488-4", ()),
    "doc-psy": ("dr-martin", "68599-0", ()),
    "doc-masked": ("dr-author", "11502-2", ("MASQUE_PS",)),
    "doc-invisible": ("dr-author", "18748-4", ("INVISIBLE_PATIENT",)),
    "doc-attest": ("dr-author", "ATTEST-RESID", ()),
    "doc-upload": (None, "DOCPAT01", ()),
}


def world() -> list[dict]:
    helene = make_patient("Lefèvre", "Hélène", 2, 80, 1, "75", "001", id="helene")
    helene["generalPractitioner"] = [{"reference": "Practitioner/dr-martin"}]
    zoe = make_patient("Dupont", "Zoé", 2, 12, 3, "69", "002", id="zoe", birthDate="2012-03-15")
    francois = make_patient("Noël", "François", 1, 75, 6, "2A", "003", id="francois", active=False)
    paul = make_patient("Petit", "Paul", 1, 60, 2, "13", "004", id="paul")
    resources = [helene, zoe, francois, paul]
    for rid, family, rpps in [
        ("dr-martin", "Martin", "10000000001"), ("dr-authorised", "Bernard", "10000000002"),
        ("dr-author", "Roux", "10000000003"), ("nurse", "Moreau", "10000000004"),
        ("dentist", "Fournier", "10000000005"), ("pharmacist", "Girard", "10000000006"),
        ("dr-blocked", "Bonnet", "10000000007"), ("dr-other", "Dupuis", "10000000008"),
        ("dr-urgence", "Lambert", "10000000009"), ("samu", "Fontaine", "10000000010"),
    ]:
        resources.append(practitioner(rid, family, rpps))
    resources.append({
        "resourceType": "RelatedPerson", "id": "parent", "patient": {"reference": "Patient/zoe"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}],
        "name": [{"family": "Dupont", "given": ["Marc"]}],
    })
    for rid, (author, code, labels) in HELENE_DOCS.items():
        system = TRE_A05 if not code[0].isdigit() else LOINC
        resources.append(document(rid, "helene", f"Practitioner/{author}" if author else "Patient/helene", code, labels, system))
        resources.append(binary(rid))
    for rid, patient, labels in [("doc-zoe", "zoe", ()), ("doc-zoe-rl", "zoe", ("INVISIBLE_REPRESENTANTS_LEGAUX",)),
                                 ("doc-francois", "francois", ()), ("doc-paul", "paul", ())]:
        resources.append(document(rid, patient, "Practitioner/dr-author", "11488-4", labels))
        resources.append(binary(rid))
    resources += [
        consent("c-authorised", "helene", "permit", "Practitioner/dr-authorised"),
        consent("c-nurse", "helene", "permit", "Practitioner/nurse"),
        consent("c-dentist", "helene", "permit", "Practitioner/dentist"),
        consent("c-pharmacist", "helene", "permit", "Practitioner/pharmacist"),
        consent("c-blocked", "helene", "deny", "Practitioner/dr-blocked"),
        consent("c-blocked-zoe", "zoe", "permit", "Practitioner/dr-blocked"),
        consent("c-masked-emergency", "helene", "permit", None, ("BTG", "ETREAT"), ("MASQUE_PS",)),
        consent("c-paul-no-btg", "paul", "deny", None, ("BTG",)),
        consent("c-paul-no-samu", "paul", "deny", None, ("ETREAT",)),
        consent("c-francois", "francois", "permit", "Practitioner/dr-authorised"),
    ]
    return resources


AUDIT_EVENT = {
    "resourceType": "AuditEvent", "id": "audit-helene",
    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
    "action": "R", "recorded": "2024-05-03T10:00:00Z", "outcome": "0",
    "agent": [{"who": {"reference": "Practitioner/dr-martin"}, "requestor": True}],
    "source": {"observer": {"display": "dmp-fhir"}},
    "entity": [{"what": {"reference": "Patient/helene"}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}}],
}

MEDECIN = (TRE_G15, "10")
ACTORS = {
    # name: (kind, fhirUser, patient in context, scopes, professions, purpose of use)
    "helene": ("patient", "Patient/helene", "helene", "patient/*.cruds openid fhirUser", (), ()),
    "parent": ("related-person", "RelatedPerson/parent", "zoe", "patient/*.rs", (), ()),
    "dr-martin": ("practitioner", "Practitioner/dr-martin", None, "user/*.cruds", (MEDECIN,), ("TREAT",)),
    "dr-authorised": ("practitioner", "Practitioner/dr-authorised", None, "user/*.cruds", (MEDECIN,), ("TREAT",)),
    "nurse": ("practitioner", "Practitioner/nurse", None, "user/*.cruds", ((TRE_G15, "60"),), ("TREAT",)),
    "dentist": ("practitioner", "Practitioner/dentist", None, "user/*.cruds", ((TRE_G15, "40"),), ("TREAT",)),
    "pharmacist": ("practitioner", "Practitioner/pharmacist", None, "user/*.cruds", ((TRE_G15, "21"),), ("TREAT",)),
    "dr-blocked": ("practitioner", "Practitioner/dr-blocked", None, "user/*.cruds", (MEDECIN,), ("TREAT",)),
    "dr-blocked-btg": ("practitioner", "Practitioner/dr-blocked", None, "user/*.cruds", (MEDECIN,), ("BTG",)),
    "dr-other": ("practitioner", "Practitioner/dr-other", None, "user/*.cruds", (MEDECIN,), ("TREAT",)),
    "dr-urgence": ("practitioner", "Practitioner/dr-urgence", None, "user/*.cruds", (MEDECIN,), ("BTG",)),
    "samu": ("practitioner", "Practitioner/samu", None, "user/*.cruds", (MEDECIN,), ("ETREAT",)),
    "vendor": ("system", None, None, "system/*.rs", (), ()),
}


@pytest.fixture(scope="module")
def dmp_app(mongo_uri):
    settings = Settings(mongodb_uri=mongo_uri, database=f"dmp_policy_{uuid.uuid4().hex[:8]}", testing=True)
    app = create_app(settings)
    services = app.extensions["dmp"]
    for resource in world():
        services.repository.update(resource["resourceType"], resource["id"], resource)
    services.audit.record(dict(AUDIT_EVENT))  # audit events only ever come from the audit trail
    yield app
    services.repository.db.client.drop_database(settings.database)


def mint(app, actor: str, scopes: str | None = None, auth_time: int | None = None) -> str:
    kind, fhir_user, patient, default_scopes, professions, purposes = ACTORS[actor]
    tokens = app.extensions["dmp_auth"].tokens
    ctx = {
        "kind": kind, "fhir_user": fhir_user, "patient": patient,
        "professions": [{"system": s, "code": c} for s, c in professions],
        "purpose_of_use": list(purposes),
    }
    if "BTG" in purposes:
        ctx["btg_reason"] = "Patient inconscient aux urgences"
    if auth_time:
        ctx["auth_time"] = auth_time
    token, _ = tokens.access_token(
        issuer="http://localhost", audience="http://localhost/fhir", client_id=f"client-{actor}",
        scope=ScopeSet.parse(scopes or default_scopes), subject=fhir_user or f"client-{actor}", grant_id=None, ctx=ctx,
    )
    return token


class ActorClient(FhirClient):
    def __init__(self, client, token):
        super().__init__(client)
        self.token = token

    def _headers(self, headers, content_type="application/fhir+json"):
        out = super()._headers(headers, content_type)
        out.setdefault("Authorization", f"Bearer {self.token}")
        return out


@pytest.fixture(scope="module")
def as_actor(dmp_app):
    def make(actor: str, scopes: str | None = None) -> ActorClient:
        return ActorClient(dmp_app.test_client(), mint(dmp_app, actor, scopes))

    return make
