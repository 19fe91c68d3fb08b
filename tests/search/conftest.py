"""A fixed, realistic French data set loaded once per module into its own database."""

from __future__ import annotations

import uuid

import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.fhir.pdsm import class_of_type
from tests.conftest import INS_NIR, LOINC, RPPS, FhirClient, make_patient

TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
TRE_A03, CLASS_OF_TYPE = class_of_type()  # the DMP class of each document type (ConceptMap ASS_X16)


def _doc(rid, patient, author, loinc, date, status="current", labels=("N",), period_start=None, **extra):
    doc = {
        "resourceType": "DocumentReference",
        "id": rid,
        "status": status,
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.{rid}"},
        "type": {"coding": [{"system": LOINC, "code": loinc}]},
        "category": [{"coding": [{"system": TRE_A03, "code": CLASS_OF_TYPE.get((LOINC, loinc), "10")}]}],
        "subject": {"reference": f"Patient/{patient}"},
        "date": date,
        "author": [{"reference": f"Practitioner/{author}"}],
        "securityLabel": [
            {"coding": [{"system": CONF if c == "N" else TRE_A07, "code": c}]} for c in labels
        ],
        "content": [{"attachment": {"contentType": "application/pdf", "creation": date}}],
        "context": {"period": {"start": period_start or date}},
    }
    doc.update(extra)
    return doc


def dataset() -> list[dict]:
    helene = make_patient("Lefèvre", "Hélène", 2, 80, 1, "75", "001", id="pat-helene")
    helene["address"] = [{"line": ["12 rue de la Roquette"], "city": "Paris", "postalCode": "75011", "country": "FR"}]
    helene["generalPractitioner"] = [{"reference": "Practitioner/dr-martin"}]
    helene["active"] = True
    helene["telecom"] = [{"system": "email", "value": "helene.lefevre@example.fr"}]
    francois = make_patient("Noël", "François", 1, 75, 6, "2A", "002", id="pat-francois")
    francois["address"] = [{"city": "Ajaccio", "postalCode": "20000"}]
    francois["active"] = False
    francois["deceasedDateTime"] = "2020-05-04"
    zoe = make_patient("Dupont", "Zoé", 2, 15, 2, "69", "003", id="pat-zoe", birthDate="2015-02-15")
    zoe["meta"] = {"tag": [{"system": "urn:dmp:test", "code": "minor"}], "profile": ["https://example.org/fhir/StructureDefinition/dmp-patient"]}
    return [
        helene,
        francois,
        zoe,
        {
            "resourceType": "Practitioner", "id": "dr-martin",
            "identifier": [{"system": RPPS, "value": "10003456789", "type": {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "RPPS"}]}}],
            "name": [{"family": "Martin", "given": ["Paul"], "prefix": ["Dr"]}], "gender": "male",
        },
        {
            "resourceType": "Practitioner", "id": "dr-durand",
            "identifier": [{"system": RPPS, "value": "10009876543"}],
            "name": [{"family": "Durand", "given": ["Claire"]}], "gender": "female",
        },
        {
            "resourceType": "Organization", "id": "org-chu", "name": "CHU de Lyon",
            "identifier": [{"system": FINESS, "value": "690781810"}],
        },
        {
            "resourceType": "PractitionerRole", "id": "role-martin",
            "practitioner": {"reference": "Practitioner/dr-martin"}, "organization": {"reference": "Organization/org-chu"},
            "code": [{"coding": [{"system": TRE_G15, "code": "10", "display": "Médecin"}]}],
            "specialty": [{"coding": [{"system": TRE_R38, "code": "SM54", "display": "Médecine générale"}]}],
        },
        {
            "resourceType": "PractitionerRole", "id": "role-durand",
            "practitioner": {"reference": "Practitioner/dr-durand"},
            "code": [{"coding": [{"system": TRE_G15, "code": "60", "display": "Infirmier"}]}],
        },
        _doc("doc-cr", "pat-helene", "dr-martin", "11488-4", "2024-03-15T10:00:00+01:00", description="Compte rendu de consultation"),
        _doc("doc-bio", "pat-helene", "dr-durand", "11502-2", "2023-11-02T08:30:00+01:00", labels=("N", "MASQUE_PS")),
        _doc(
            "doc-img", "pat-francois", "dr-martin", "18748-4", "2024-07-01T14:00:00+02:00", status="superseded",
            relatesTo=[{"code": "replaces", "target": {"reference": "DocumentReference/doc-cr"}}],
        ),
        {
            "resourceType": "List", "id": "ss-1", "status": "current", "mode": "working", "title": "Lot de soumission",
            "subject": {"reference": "Patient/pat-helene"}, "date": "2024-03-15T10:05:00+01:00",
            "source": {"reference": "Practitioner/dr-martin"},
            "entry": [{"item": {"reference": "DocumentReference/doc-cr"}}, {"item": {"reference": "DocumentReference/doc-bio"}}],
        },
        {
            "resourceType": "Consent", "id": "cons-1", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"reference": "Patient/pat-helene"}, "dateTime": "2024-01-10",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {
                "type": "permit", "period": {"start": "2024-01-10", "end": "2025-01-10"},
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Practitioner/dr-durand"}}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            },
        },
        {
            "resourceType": "RelatedPerson", "id": "rp-parent", "patient": {"reference": "Patient/pat-zoe"},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}],
            "name": [{"family": "Dupont", "given": ["Marc"]}],
        },
    ]


def server_written() -> list[dict]:
    """Resources only the server writes (AuditEvent), stored through the repository."""
    return [
        {
            "resourceType": "AuditEvent",
            "id": "audit-1",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "action": "R",
            "recorded": "2024-03-16T09:00:00Z",
            "outcome": "0",
            "agent": [
                {
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                    "who": {"reference": "Practitioner/dr-martin"},
                    "name": "Dr Paul Martin",
                    "requestor": True,
                    "network": {"address": "192.0.2.10", "type": "2"},
                }
            ],
            "source": {"observer": {"reference": "Organization/org-chu"}, "site": "dmp-fhir"},
            "entity": [
                {"what": {"reference": "Patient/pat-helene"}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}, "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}, "name": "Hélène Lefèvre"},
                {"what": {"reference": "DocumentReference/doc-cr"}, "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}},
            ],
        },
        {"resourceType": "Binary", "id": "bin-1", "contentType": "text/plain", "data": "Q29tcHRlIHJlbmR1"},
    ]


@pytest.fixture(scope="session", autouse=True)
def _record_queries():
    """Record every query the repository sends while the search suite runs (see index_coverage)."""
    from fhir_server.storage.repository import Repository
    from tests.search import index_coverage

    original_find_docs, original_count = Repository.find_docs, Repository.count

    def find_docs(self, query, projection=None, sort=None, limit=0):
        index_coverage.record(query, sort)
        return original_find_docs(self, query, projection, sort, limit)

    def count(self, query):
        index_coverage.record(query, None)
        return original_count(self, query)

    Repository.find_docs, Repository.count = find_docs, count
    yield
    Repository.find_docs, Repository.count = original_find_docs, original_count


@pytest.fixture(scope="module")
def search_app(mongo_uri):
    settings = Settings(mongodb_uri=mongo_uri, database=f"dmp_search_{uuid.uuid4().hex[:8]}", testing=True, auth_required=False)
    app = create_app(settings)
    client = app.test_client()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in dataset()
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    repository = app.extensions["dmp"].repository
    for resource in server_written():
        repository.update(resource["resourceType"], resource["id"], resource)
    yield app
    app.extensions["dmp"].repository.db.client.drop_database(settings.database)


@pytest.fixture(scope="module")
def search(search_app):
    return FhirClient(search_app.test_client())


__all__ = ["INS_NIR"]
