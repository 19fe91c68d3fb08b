#!/usr/bin/env python3
"""Check the search-parameter registry (profiles/search-parameters.json).

Checks, for every entry:
  * required keys are present, ``type`` is a FHIR search type, ``source`` is known;
  * ``target`` only on reference parameters, ``component`` only (and always) on
    composite parameters, each component code naming a parameter of the same base;
  * no duplicate (base, code);
  * the FHIRPath ``expression`` is rooted at the base type (``Resource.`` for the
    shared parameters) and evaluates with fhirpathpy -- called exactly as the server
    calls it, ``evaluate(resource, expression, {})`` without a type model -- on a
    small realistic sample resource of the base type, without raising, and returns
    at least one value on that sample (so a rewrite that silently selects nothing,
    e.g. an un-expanded choice type, is caught).

Parameters with base ``Resource`` are evaluated against every sample, with the
leading ``Resource.`` replaced by the sample's type (what the evaluator has to do:
fhirpathpy returns nothing for ``Resource.id`` on a Patient).

Usage: python scripts/check_search_registry.py [path/to/search-parameters.json]
Exit status 0 when everything passes, 1 otherwise.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

try:
    from fhirpathpy import evaluate
except ImportError:  # pragma: no cover - environment problem, not a registry problem
    sys.stderr.write("fhirpathpy is not installed (pip install fhirpathpy)\n")
    sys.exit(2)

REGISTRY = Path(__file__).resolve().parent.parent / "profiles" / "search-parameters.json"

SEARCH_TYPES = {"number", "date", "string", "token", "reference", "composite",
                "quantity", "uri", "special"}
SOURCES = {"FHIR R4", "IHE MHD", "ANS PDSm"}
REQUIRED = ("base", "code", "type", "expression", "url", "description", "source")
ALLOWED = set(REQUIRED) | {"target", "component"}

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "urn:oid:1.2.250.1.71.4.2.2"
MHD_EXT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
PDSM_ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
META = {
    "versionId": "1",
    "lastUpdated": "2024-03-01T10:00:00+01:00",
    "source": "urn:oid:1.2.250.1.999.1#dpi",
    "profile": ["https://interop.esante.gouv.fr/ig/fhir/core/StructureDefinition/fr-core-patient"],
    "tag": [{"system": "http://example.org/tags", "code": "test"}],
    "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
}
ADDRESS = {"use": "home", "line": ["12 rue de la Paix"], "city": "Paris",
           "state": "Île-de-France", "postalCode": "75002", "country": "FRA"}
TELECOM = [{"system": "phone", "value": "+33 1 23 45 67 89", "use": "home"},
           {"system": "email", "value": "contact@example.fr"}]
FR_LANG = {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-FR"}]}


def _meta(profile: str | None = None) -> dict:
    meta = json.loads(json.dumps(META))
    if profile:
        meta["profile"] = [profile]
    return meta


SAMPLES: dict[str, dict] = {
    "Patient": {
        "resourceType": "Patient", "id": "pat-ins-1", "meta": _meta(),
        "identifier": [{"use": "official",
                        "type": {"coding": [{"system": "http://interopsante.org/CodeSystem/fr-v2-0203",
                                             "code": "INS-NIR"}]},
                        "system": INS_NIR, "value": "248092A203297"}],
        "active": True,
        "name": [{"use": "official", "family": "Durand", "given": ["Marie", "Louise"]}],
        "telecom": TELECOM, "gender": "female", "birthDate": "1948-09-12",
        "deceasedBoolean": False, "address": [ADDRESS],
        "communication": [{"language": FR_LANG, "preferred": True}],
        "generalPractitioner": [{"reference": "PractitionerRole/pr-1"}],
        "managingOrganization": {"reference": "Organization/org-1"},
        "link": [{"other": {"reference": "Patient/pat-old"}, "type": "replaces"}],
    },
    "Practitioner": {
        "resourceType": "Practitioner", "id": "pra-1",
        "meta": _meta("https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-practitioner"),
        "identifier": [{"system": RPPS, "value": "10001234567"}],
        "active": True,
        "name": [{"family": "Martin", "given": ["Paul"], "prefix": ["Dr"]}],
        "telecom": TELECOM, "address": [ADDRESS], "gender": "male",
        "communication": [FR_LANG],
    },
    "PractitionerRole": {
        "resourceType": "PractitionerRole", "id": "pr-1", "meta": _meta(),
        "identifier": [{"system": RPPS, "value": "10001234567/org-1"}],
        "active": True, "period": {"start": "2015-01-01"},
        "practitioner": {"reference": "Practitioner/pra-1"},
        "organization": {"reference": "Organization/org-1"},
        "code": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
                              "code": "10", "display": "Médecin"}]}],
        "specialty": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale",
                                   "code": "SM26", "display": "Qualifié en Médecine Générale (SM)"}]}],
        "location": [{"reference": "Location/loc-1"}],
        "healthcareService": [{"reference": "HealthcareService/hs-1"}],
        "telecom": TELECOM,
        "endpoint": [{"reference": "Endpoint/ep-1"}],
    },
    "Organization": {
        "resourceType": "Organization", "id": "org-1", "meta": _meta(),
        "identifier": [{"system": FINESS, "value": "750712184"}],
        "active": True,
        "type": [{"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R66-CategorieEtablissement/FHIR/TRE-R66-CategorieEtablissement",
                              "code": "355", "display": "Centre Hospitalier (C.H.)"}]}],
        "name": "Centre Hospitalier de Test", "alias": ["CH Test"],
        "telecom": TELECOM, "address": [ADDRESS],
        "partOf": {"reference": "Organization/org-ej"},
        "endpoint": [{"reference": "Endpoint/ep-1"}],
    },
    "RelatedPerson": {
        "resourceType": "RelatedPerson", "id": "rp-1", "meta": _meta(),
        "identifier": [{"system": "urn:oid:1.2.250.1.999.2", "value": "RP-42"}],
        "active": True, "patient": {"reference": "Patient/pat-ins-1"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "DAU", "display": "daughter"}]}],
        "name": [{"family": "Durand", "given": ["Sophie"]}],
        "telecom": TELECOM, "gender": "female", "birthDate": "1975-04-02",
        "address": [ADDRESS],
    },
    "DocumentReference": {
        "resourceType": "DocumentReference", "id": "doc-1",
        "meta": _meta("https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference"),
        "extension": [{"url": PDSM_ARCHIVED, "valueBoolean": False}],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.3.1.1"},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:0c287d32-01e3-4d87-9953-9fcc9404eb21"}],
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
        "category": [{"coding": [{"system": "urn:oid:1.2.250.1.213.1.1.4.1",
                                  "code": "REPORTS", "display": "Compte rendu"}]}],
        "subject": {"reference": "Patient/pat-ins-1"},
        "date": "2024-03-01T10:00:00+01:00",
        "author": [{"reference": "PractitionerRole/pr-1"}, {"reference": "Organization/org-1"}],
        "authenticator": {"reference": "PractitionerRole/pr-1"},
        "custodian": {"reference": "Organization/org-1"},
        "relatesTo": [{"code": "replaces", "target": {"reference": "DocumentReference/doc-0"}}],
        "description": "Compte rendu de consultation",
        "securityLabel": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                       "code": "N"}]}],
        "content": [{"attachment": {"contentType": "application/pdf", "language": "fr-FR",
                                    "url": "Binary/bin-1", "title": "CR consultation",
                                    "creation": "2024-02-28T16:30:00+01:00"},
                     "format": {"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                                "code": "urn:ihe:iti:xds-sd:pdf:2008"}}],
        "context": {
            "encounter": [{"reference": "Encounter/enc-1"}],
            "event": [{"coding": [{"system": "https://smt.esante.gouv.fr/terminologie-ccam",
                                   "code": "YYYY001"}]}],
            "period": {"start": "2024-02-28T16:00:00+01:00", "end": "2024-02-28T16:30:00+01:00"},
            "facilityType": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
                                         "code": "SA01"}]},
            "practiceSetting": {"coding": [{"system": "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocSNOMED/FHIR/TRE-A00-ProducteurDocSNOMED",
                                            "code": "394802001"}]},
            "sourcePatientInfo": {"reference": "Patient/pat-ins-1"},
            "related": [{"reference": "ServiceRequest/sr-1"}],
        },
    },
    "List": {
        "resourceType": "List", "id": "ss-1",
        "meta": _meta("https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-submissionset-comprehensive"),
        "extension": [
            {"url": MHD_EXT + "ihe-designationType",
             "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]}},
            {"url": MHD_EXT + "ihe-sourceId",
             "valueIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.250.1.999.4"}},
            {"url": MHD_EXT + "ihe-authorOrg", "valueReference": {"reference": "Organization/org-1"}},
            {"url": PDSM_ARCHIVED, "valueBoolean": False},
        ],
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986",
                        "value": "urn:oid:1.2.250.1.999.4.1"}],
        "status": "current", "mode": "working", "title": "Lot de soumission",
        "code": {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                             "code": "submissionset"}]},
        "subject": {"reference": "Patient/pat-ins-1"},
        "encounter": {"reference": "Encounter/enc-1"},
        "date": "2024-03-01T10:00:00+01:00",
        "source": {"reference": "PractitionerRole/pr-1"},
        "note": [{"text": "Envoi du CR"}],
        "entry": [{"item": {"reference": "DocumentReference/doc-1"}}],
        "emptyReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                                    "code": "unavailable"}]},
    },
    "Consent": {
        "resourceType": "Consent", "id": "cons-1", "meta": _meta(),
        "identifier": [{"system": "urn:oid:1.2.250.1.999.5", "value": "C-1"}],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat-ins-1"},
        "dateTime": "2024-01-15T09:00:00+01:00",
        "performer": [{"reference": "Patient/pat-ins-1"}],
        "organization": [{"reference": "Organization/org-1"}],
        "sourceReference": {"reference": "DocumentReference/doc-1"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2024-01-15", "end": "2025-01-15"},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                            "code": "PRCP"}]},
                       "reference": {"reference": "PractitionerRole/pr-1"}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction",
                                    "code": "access"}]}],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                               "code": "N"}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                         "code": "TREAT"}],
            "data": [{"meaning": "instance", "reference": {"reference": "DocumentReference/doc-1"}}],
        },
    },
    "AuditEvent": {
        "resourceType": "AuditEvent", "id": "ae-1", "meta": _meta(),
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110112",
                 "display": "Query"},
        "subtype": [{"system": "urn:ihe:event-type-code", "code": "ITI-67",
                     "display": "Find Document References"}],
        "action": "E", "recorded": "2024-03-01T10:00:05+01:00", "outcome": "0",
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "author"}]},
                   "role": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                         "code": "110153"}]}],
                   "who": {"reference": "PractitionerRole/pr-1"},
                   "altId": "pmartin", "name": "Dr Paul Martin", "requestor": True,
                   "policy": ["urn:oid:1.2.250.1.999.6"],
                   "network": {"address": "192.0.2.10", "type": "2"}},
                  {"who": {"reference": "Patient/pat-ins-1"}, "requestor": False}],
        "source": {"site": "CH Test", "observer": {"reference": "Device/dev-1"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4"}]},
        "entity": [{"what": {"reference": "Patient/pat-ins-1"},
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                             "code": "1"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role",
                             "code": "1"},
                    "name": "Durand Marie"},
                   {"what": {"reference": "DocumentReference/doc-1"}}],
    },
    "Binary": {
        "resourceType": "Binary", "id": "bin-1", "meta": _meta(),
        "contentType": "application/pdf",
        "securityContext": {"reference": "DocumentReference/doc-1"},
        "data": "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK",
    },
    "Subscription": {
        "resourceType": "Subscription", "id": "sub-1", "meta": _meta(),
        "status": "active",
        "contact": [{"system": "email", "value": "admin@example.fr"}],
        "reason": "Notification de nouveaux documents",
        "criteria": "DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.8|248092A203297",
        "channel": {"type": "rest-hook", "endpoint": "https://example.fr/notify",
                    "payload": "application/fhir+json"},
    },
}


# Further variants for values that cannot coexist in one resource (choice types).
EXTRA_SAMPLES: dict[str, list[dict]] = {
    "Patient": [dict(
        {k: v for k, v in SAMPLES["Patient"].items() if k not in ("deceasedBoolean", "id")},
        id="pat-ins-2", deceasedDateTime="2023-11-05T08:15:00+01:00")],
}


def _variants(rtype: str) -> list[dict]:
    return [SAMPLES[rtype]] + EXTRA_SAMPLES.get(rtype, [])


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _eval(resource: dict, expression: str):
    return evaluate(resource, expression, {})


def check(path: Path) -> int:
    errors: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}")
        return 1
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), list):
        print("registry must be an object with a 'parameters' list")
        return 1
    if not isinstance(data.get("description"), str):
        errors.append("top-level 'description' missing")

    params = data["parameters"]
    seen: dict[tuple[str, str], int] = {}
    by_base: dict[str, set[str]] = {}
    for i, p in enumerate(params):
        where = f"#{i} {p.get('base')}.{p.get('code')}"
        missing = [k for k in REQUIRED if not isinstance(p.get(k), str) or not p.get(k)]
        if missing:
            errors.append(f"{where}: missing/empty keys {missing}")
            continue
        extra = set(p) - ALLOWED
        if extra:
            errors.append(f"{where}: unexpected keys {sorted(extra)}")
        if p["type"] not in SEARCH_TYPES:
            errors.append(f"{where}: invalid type {p['type']!r}")
        if p["source"] not in SOURCES:
            errors.append(f"{where}: invalid source {p['source']!r}")
        if not re.match(r"^https?://", p["url"]):
            errors.append(f"{where}: url is not absolute: {p['url']!r}")
        if p["base"] != "Resource" and p["base"] not in SAMPLES:
            errors.append(f"{where}: base {p['base']!r} has no sample resource")
        key = (p["base"], p["code"])
        if key in seen:
            errors.append(f"{where}: duplicate (base, code), first at #{seen[key]}")
        seen[key] = i
        by_base.setdefault(p["base"], set()).add(p["code"])
        if p["type"] == "reference":
            tgt = p.get("target")
            if not isinstance(tgt, list) or not tgt or not all(isinstance(t, str) and t for t in tgt):
                errors.append(f"{where}: reference parameter needs a non-empty 'target' list")
        elif "target" in p:
            errors.append(f"{where}: 'target' on a non-reference parameter")
        if p["type"] == "composite":
            comp = p.get("component")
            if not isinstance(comp, list) or len(comp) < 2 or not all(
                    isinstance(c, dict) and isinstance(c.get("code"), str)
                    and isinstance(c.get("expression"), str) for c in comp):
                errors.append(f"{where}: composite needs a 'component' list of {{code, expression}}")
        elif "component" in p:
            errors.append(f"{where}: 'component' on a non-composite parameter")
        # every union branch must be rooted at the base type
        for branch in p["expression"].split(" | "):
            if not re.match(r"^\(?" + re.escape(p["base"]) + r"\.", branch.strip()):
                errors.append(f"{where}: expression branch not rooted at {p['base']}: {branch!r}")

    # component codes must name parameters of the same base
    for p in params:
        for c in p.get("component") or []:
            if isinstance(c, dict) and c.get("code") not in by_base.get(p.get("base"), set()):
                errors.append(f"{p.get('base')}.{p.get('code')}: component code {c.get('code')!r} "
                              f"is not a parameter of {p.get('base')}")

    # evaluate every expression on the sample(s)
    evaluated = 0
    for p in params:
        if not all(isinstance(p.get(k), str) for k in ("base", "code", "expression")):
            continue
        where = f"{p['base']}.{p['code']}"
        targets = list(SAMPLES) if p["base"] == "Resource" else [p["base"]]
        for rtype in targets:
            if rtype not in SAMPLES:
                continue
            expr = p["expression"]
            if p["base"] == "Resource":
                for sample in _variants(rtype):
                    try:  # the raw form must at least not raise
                        _eval(sample, expr)
                    except Exception as exc:  # noqa: BLE001 - any failure is a registry failure
                        errors.append(f"{where} on {rtype}: raw expression raised {type(exc).__name__}: {exc}")
                expr = re.sub(r"(^|\|\s*)\(?Resource\.",
                              lambda m: m.group(0).replace("Resource.", rtype + "."), expr)
            selected = []
            for sample in _variants(rtype):
                try:
                    result = _eval(sample, expr)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{where} on {rtype}/{sample.get('id')}: {expr!r} raised "
                                  f"{type(exc).__name__}: {exc}")
                    continue
                evaluated += 1
                selected.extend(_as_list(result) if result else [])
            if not selected:
                errors.append(f"{where} on {rtype}: {expr!r} selected nothing on the sample(s)")
                continue
            if p.get("type") == "composite":
                for item in selected:
                    for c in p.get("component") or []:
                        try:
                            sub = _eval(item, c["expression"])
                        except Exception as exc:  # noqa: BLE001
                            errors.append(f"{where} component {c['code']}: raised {type(exc).__name__}: {exc}")
                            continue
                        if not sub:
                            errors.append(f"{where} component {c['code']}: {c['expression']!r} selected nothing")

    types = sorted({p.get("base") for p in params if isinstance(p, dict)})
    if errors:
        for e in errors:
            print("FAIL:", e)
        print(f"{len(errors)} problem(s) in {len(params)} parameters")
        return 1
    print(f"{len(params)} parameters, {len(types)} base types ({', '.join(types)}), "
          f"all expressions evaluate ({evaluated} evaluations on sample resources)")
    return 0


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else REGISTRY
    return check(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
