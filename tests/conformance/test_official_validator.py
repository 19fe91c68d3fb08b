"""What the server serves, checked by the official HL7 FHIR validator (HAPI FHIR's instance validator).

One validator run per session (the JVM is slow to start): a module fixture builds a realistic sample
through the REST API (one resource of every stored type, read back; search, history and
transaction-response Bundles; OperationOutcomes; an AuditEvent the server wrote), writes each
response body to a file, adds every FHIR definition under profiles/ and two deliberately broken
resources, and validates them all offline with scripts/fhir_validator.py. Then one test per item:
it fails on any error or fatal issue and lists them. Warnings and information are allowed (unknown
offline terminologies such as LOINC or the French NOS code systems only ever give warnings).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from fhir_server.fhir.resource_types import RESOURCE_TYPES
from tests.conftest import FhirClient, load_script, make_document, make_patient, make_practitioner

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "profiles"

NOS = "https://mos.esante.gouv.fr/NOS"
TRE_A03 = f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A01 = f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
TRE_A11 = f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
TRE_R02 = f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
TRE_G15 = f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = f"{NOS}/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
LOINC = "http://loinc.org"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _profile_files() -> list[Path]:
    """Every FHIR resource under profiles/ (StructureDefinitions, ValueSets, CodeSystems...), not the
    project's own JSON files (authorisation matrix, search-parameter registry, JSON schemas)."""
    out = []
    for path in sorted(PROFILES.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("resourceType"), str) and "$schema" not in data:
            out.append(path)
    return out


# What the server returns, by item name (a file <name>.json in the sample directory).
SERVER_ITEMS = [
    "capability-statement",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "RelatedPerson",
    "DocumentReference",
    "DocumentReference-comprehensive",
    "Binary",
    "List-submissionset",
    "Consent",
    "Subscription",
    "AuditEvent",
    "bundle-searchset-include",
    "bundle-searchset-auditevent",
    "bundle-history",
    "bundle-transaction-response",
    "operationoutcome-not-found",
    "operationoutcome-invalid",
    "operationoutcome-validate",
]
PROFILE_FILES = _profile_files()
def _patient_with_a_wrong_nir_key() -> dict:
    patient = make_patient()
    nir = patient["identifier"][0]["value"]
    patient["identifier"][0]["value"] = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    return patient


NEGATIVE_ITEMS = {
    "patient-bad-gender": {**make_patient(), "gender": "femme"},
    "patient-wrong-nir-key": _patient_with_a_wrong_nir_key(),
    "documentreference-no-status-no-content": {
        k: v for k, v in make_document("Patient/123").items() if k not in ("status", "content")
    },
}


def _check(response, status=(200, 201)):
    assert response.status_code in status, (response.status_code, response.get_data(as_text=True)[:2000])
    return response.get_json()


def _build_sample(fc: FhirClient) -> dict[str, dict]:
    """Create a realistic DMP through the REST API; return {item name: response body}."""
    out: dict[str, dict] = {}
    out["capability-statement"] = _check(fc.get("/fhir/metadata"))

    patient = _check(fc.post("/fhir/Patient", json=make_patient()))
    pid = patient["id"]
    prac = _check(fc.post("/fhir/Practitioner", json=make_practitioner()))
    org = _check(fc.post("/fhir/Organization", json={
        "resourceType": "Organization",
        "identifier": [{"system": FINESS, "value": "750712184"}],
        "active": True,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": "Hôpital Saint-Louis",
        "telecom": [{"system": "phone", "value": "+33 1 42 49 49 49", "use": "work"}],
        "address": [{"line": ["1 avenue Claude Vellefaux"], "city": "Paris", "postalCode": "75010", "country": "FR"}],
    }))
    role = _check(fc.post("/fhir/PractitionerRole", json={
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": f"Practitioner/{prac['id']}"},
        "organization": {"reference": f"Organization/{org['id']}"},
        "code": [{"coding": [{"system": TRE_G15, "code": "10"}]}],
        "specialty": [{"coding": [{"system": TRE_R38, "code": "SM54"}]}],
    }))
    related = _check(fc.post("/fhir/RelatedPerson", json={
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": {"reference": f"Patient/{pid}"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "GUARD"}]}],
        "name": [{"family": "Lefèvre", "given": ["Marc"]}],
        "telecom": [{"system": "phone", "value": "+33 6 12 34 56 78"}],
    }))
    binary = _check(fc.post("/fhir/Binary", json={
        "resourceType": "Binary", "contentType": "text/plain",
        "data": base64.b64encode(b"Compte rendu de consultation.").decode(),
    }))
    document = make_document(f"Patient/{pid}", f"Practitioner/{prac['id']}", title="Compte rendu de consultation")
    document["masterIdentifier"] = {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.1"}
    document["content"][0]["attachment"]["url"] = f"Binary/{binary['id']}"
    doc = _check(fc.post("/fhir/DocumentReference", json=document))
    consent = _check(fc.post("/fhir/Consent", json={
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{pid}"},
        "dateTime": "2026-11-20T10:00:00+01:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-01-01", "end": "2027-12-31"},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": f"Practitioner/{prac['id']}"},
            }],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
        },
    }))

    # An ITI-65-style transaction: SubmissionSet + comprehensive DocumentReference + Binary.
    doc_url, bin_url, list_url = "urn:uuid:3f1b7c2e-0c51-4c59-9d5e-1a2b3c4d5e60", \
        "urn:uuid:3f1b7c2e-0c51-4c59-9d5e-1a2b3c4d5e61", "urn:uuid:3f1b7c2e-0c51-4c59-9d5e-1a2b3c4d5e62"
    comprehensive = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.1.2"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11490-0", "display": "Lettre de liaison à la sortie"}]},
        "category": [{"coding": [{"system": TRE_A03, "code": "10"}]}],
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2026-11-21T17:05:00+01:00",
        "author": [{"reference": f"Practitioner/{prac['id']}"}],
        "description": "Lettre de liaison à la sortie",
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}],
        "content": [{
            "attachment": {"contentType": "application/pdf", "language": "fr-FR", "url": bin_url,
                           "size": len(PDF), "hash": base64.b64encode(hashlib.sha1(PDF).digest()).decode(),
                           "title": "Lettre de liaison", "creation": "2026-11-21T17:05:00+01:00"},
            "format": {"system": TRE_A11, "code": "urn:ihe:iti:xds-sd:pdf:2008"},
        }],
        "context": {
            "period": {"start": "2026-11-20T08:30:00+01:00"},
            "facilityType": {"coding": [{"system": TRE_R02, "code": "SA01"}]},
            "practiceSetting": {"coding": [{"system": TRE_A01, "code": "ETABLISSEMENT"}]},
            "sourcePatientInfo": {"reference": f"Patient/{pid}"},
        },
    }
    submission_set = {
        "resourceType": "List",
        "extension": [{"url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                       "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.7.1"}}],
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986", "value": "urn:uuid:0d7e1c8a-5d4f-4b8e-9c1a-2b3c4d5e6f70"}],
        "status": "current",
        "mode": "working",
        "title": "Lot de soumission",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "date": "2026-11-21T17:06:00+01:00",
        "source": {"reference": f"Practitioner/{prac['id']}"},
        "entry": [{"item": {"reference": doc_url}}],
    }
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": list_url, "resource": submission_set, "request": {"method": "POST", "url": "List"}},
        {"fullUrl": doc_url, "resource": comprehensive, "request": {"method": "POST", "url": "DocumentReference"}},
        {"fullUrl": bin_url, "resource": {"resourceType": "Binary", "contentType": "application/pdf",
                                          "data": base64.b64encode(PDF).decode()},
         "request": {"method": "POST", "url": "Binary"}},
    ]}
    tx = _check(fc.post("/fhir", json=transaction))
    out["bundle-transaction-response"] = tx
    locations = [e["response"]["location"].split("/_history")[0] for e in tx["entry"]]
    list_ref = next(loc for loc in locations if loc.startswith("List/"))
    comprehensive_ref = next(loc for loc in locations if loc.startswith("DocumentReference/"))

    # History: one update, then the instance history.
    updated = {**patient, "telecom": [{"system": "email", "value": "helene.lefevre@example.fr"}]}
    _check(fc.put(f"/fhir/Patient/{pid}", json=updated))
    out["bundle-history"] = _check(fc.get(f"/fhir/Patient/{pid}/_history"))

    # Everything read back as the server serves it.
    for name, ref in [
        ("Patient", f"Patient/{pid}"), ("Practitioner", f"Practitioner/{prac['id']}"),
        ("PractitionerRole", f"PractitionerRole/{role['id']}"), ("Organization", f"Organization/{org['id']}"),
        ("RelatedPerson", f"RelatedPerson/{related['id']}"), ("DocumentReference", f"DocumentReference/{doc['id']}"),
        ("DocumentReference-comprehensive", comprehensive_ref), ("Binary", f"Binary/{binary['id']}"),
        ("List-submissionset", list_ref), ("Consent", f"Consent/{consent['id']}"),
    ]:
        out[name] = _check(fc.get(f"/fhir/{ref}"))

    subscription = _check(fc.post("/fhir/Subscription", json={
        "resourceType": "Subscription", "status": "requested", "reason": "Nouveaux documents du patient",
        "criteria": f"DocumentReference?patient=Patient/{pid}",
        "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/dmp", "payload": "application/fhir+json"}}))
    out["Subscription"] = _check(fc.get(f"/fhir/Subscription/{subscription['id']}"))

    out["bundle-searchset-include"] = _check(fc.get(f"/fhir/DocumentReference?patient={pid}&status=current&_include=DocumentReference:subject"))
    # Every interaction above was audited by the server (audit is on in open mode too).
    audits = _check(fc.get("/fhir/AuditEvent?_count=5"))
    out["bundle-searchset-auditevent"] = audits
    assert audits.get("entry"), "the server recorded no AuditEvent"
    out["AuditEvent"] = _check(fc.get(f"/fhir/AuditEvent/{audits['entry'][0]['resource']['id']}"))

    out["operationoutcome-not-found"] = _check(fc.get("/fhir/Patient/does-not-exist"), status=(404,))
    out["operationoutcome-invalid"] = _check(
        fc.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "femme"}), status=(400, 422))
    out["operationoutcome-validate"] = _check(fc.post("/fhir/Patient/$validate", json=make_patient(rank="009")),
                                              status=(200,))
    return out


@pytest.fixture(scope="module")
def report(open_app, tmp_path_factory):
    """Build the sample, validate everything in ONE validator run; {item name: file report}."""
    validator = load_script("fhir_validator")
    validator.build()  # instant when scripts/test already built it

    db = open_app.extensions["dmp"].repository.db
    for name in ("resources", "audit_events", "history", "transactions", "blobs"):
        db[name].delete_many({})
    sample = _build_sample(FhirClient(open_app.test_client()))
    assert sorted(sample) == sorted(SERVER_ITEMS)

    # DMP_CONFORMANCE_DIR=somewhere keeps the sample and the validator's report for inspection.
    keep = os.environ.get("DMP_CONFORMANCE_DIR")
    directory = Path(keep) if keep else tmp_path_factory.mktemp("conformance-sample")
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name, body in {**sample, **{f"negative-{k}": v for k, v in NEGATIVE_ITEMS.items()}}.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(body, ensure_ascii=False, indent=1), encoding="utf-8")
        files[name] = path
    for path in PROFILE_FILES:
        files[f"profiles/{path.relative_to(PROFILES)}"] = path

    # Each type's DMP profile too, so the HL7 validator also judges our profiles' own rules
    # (bindings, cardinalities, the NIR-key invariant) on what the server returns.
    dmp_profiles = [rt.profile for rt in RESOURCE_TYPES.values() if rt.profile]
    result = validator.run_validator([PROFILES], [directory, *PROFILE_FILES], dmp_profiles)
    if keep:
        (directory.parent / f"{directory.name}-report.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    by_file = {str(Path(f["file"]).resolve()): f for f in result["files"]}
    out = {name: by_file[str(path.resolve())] for name, path in files.items()}
    out["_summary"] = result["summary"]
    return out


def _format(name: str, entry: dict) -> str:
    lines = [f"{name}: {entry['errors']} error(s) from the HL7 validator ({entry['file']})"]
    for issue in entry["issues"]:
        if issue["severity"] in ("error", "fatal"):
            where = f"line {issue['line']}" if issue.get("line") else ""
            lines.append(f"  [{issue['severity']}] {issue['location']} {where}: {issue['message']}")
    return "\n".join(lines)


def _errors(entry: dict) -> list[dict]:
    return [i for i in entry["issues"] if i["severity"] in ("error", "fatal")]


@pytest.mark.parametrize("name", SERVER_ITEMS)
def test_server_output_is_valid_fhir(report, name):
    entry = report[name]
    assert not _errors(entry), _format(name, entry)


@pytest.mark.parametrize("name", [f"profiles/{p.relative_to(PROFILES)}" for p in PROFILE_FILES])
def test_profile_definition_is_valid_fhir(report, name):
    entry = report[name]
    assert not _errors(entry), _format(name, entry)


def test_the_validator_really_validates(report):
    """Deliberately broken resources must produce errors, at the right places."""
    gender = _errors(report["negative-patient-bad-gender"])
    assert any(i["location"] == "Patient.gender" for i in gender), gender
    nir = _errors(report["negative-patient-wrong-nir-key"])  # our profile's FHIRPath invariant, run by HAPI
    assert [i["location"] for i in nir] == ["Patient.identifier[0]"] and "dmp-pat-2" in nir[0]["message"], nir
    document = _errors(report["negative-documentreference-no-status-no-content"])
    locations = " ".join(f"{i['location']} {i['message']}" for i in document)
    assert "status" in locations and "content" in locations, document


def test_unknown_offline_terminologies_are_warnings_not_errors(report):
    """LOINC and the French NOS code systems cannot be checked offline: warned about, never errors."""
    messages = [i for i in report["DocumentReference-comprehensive"]["issues"]
                if "loinc.org" in i["message"] or "mos.esante.gouv.fr" in i["message"]]
    assert messages and all(i["severity"] in ("warning", "information") for i in messages), messages
