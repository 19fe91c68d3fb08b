"""Building ITI-65 Provide Document Bundles (ANS PDSm Comprehensive) as an EHR vendor sends them.

Client side: used by the ITI-65 benchmark (scripts/bench_iti65.py) and the tests, never by the
server, which only checks such bundles (fhir/pdsm.py).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from dataclasses import dataclass, field

from fpdf import FPDF

NOS = "https://mos.esante.gouv.fr/NOS"
LOINC = "http://loinc.org"
TRE_A00 = f"{NOS}/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
TRE_A01 = f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
TRE_A03 = f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A05 = f"{NOS}/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
TRE_A06 = f"{NOS}/TRE_A06-FormatCodeComplementaire/FHIR/TRE-A06-FormatCodeComplementaire"
TRE_A11 = f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
TRE_R02 = f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
SOURCE_ID = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"


def pdf(title: str, body: str = "Compte rendu.", size: int = 0) -> bytes:
    """A real one-page PDF; with `size`, padded to that many bytes by comment lines after %%EOF
    (readers ignore them), as scanned documents of that size would weigh."""
    document = FPDF(format="A4")
    document.add_page()
    document.set_font("Helvetica", size=12)
    document.multi_cell(0, 8, f"{title}\n\n{body}")
    data = bytes(document.output())
    if size > len(data):
        padding = (os.urandom((size - len(data)) // 2 + 1).hex()[: size - len(data) - 2]).encode()
        data += b"%" + padding + b"\n"
    return data


@dataclass
class Doc:
    """One document of a bundle: its DMP type and class, format, content and who wrote it."""

    type_code: str
    class_code: str
    title: str
    type_system: str = LOINC
    format_system: str = TRE_A11
    format_code: str = "urn:ihe:iti:xds-sd:pdf:2008"
    content_type: str = "application/pdf"
    data: bytes | None = None
    facility: tuple[str, str] = (TRE_R02, "SA01")
    setting: tuple[str, str] = (TRE_A01, "ETABLISSEMENT")
    labels: tuple[tuple[str, str], ...] = ((CONFIDENTIALITY, "N"),)
    master: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")
    replaces: str | None = None  # "DocumentReference/<id>"
    service_start: str = "2026-11-20T08:30:00+01:00"

    def bytes(self) -> bytes:
        if self.data is None:
            self.data = pdf(self.title)
        return self.data


DISCHARGE_LETTER = dict(type_code="11490-0", class_code="10", title="Lettre de liaison à la sortie",
                        format_system=TRE_A06, format_code="urn:asip:ci-sis:ldl-ses:2017")
LAB_REPORT = dict(type_code="11502-2", class_code="10", title="Compte rendu d'examens biologiques",
                  setting=(TRE_A01, "AMBULATOIRE"), facility=(TRE_R02, "SA29"))
IMAGING_REPORT = dict(type_code="18748-4", class_code="31", title="Compte rendu d'imagerie médicale",
                      setting=(TRE_A01, "AMBULATOIRE"), facility=(TRE_R02, "SA29"))
PATIENT_SUMMARY = dict(type_code="60591-5", class_code="11", title="Synthèse médicale (VSM)",
                       setting=(TRE_A01, "AMBULATOIRE"), facility=(TRE_R02, "SA07"))


def document_reference(doc: Doc, patient_ref: str, author_ref: str, binary_url: str) -> dict:
    data = doc.bytes()
    resource = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": doc.master},
        "status": "current",
        "type": {"coding": [{"system": doc.type_system, "code": doc.type_code}]},
        "category": [{"coding": [{"system": TRE_A03, "code": doc.class_code}]}],
        "subject": {"reference": patient_ref},
        "date": "2026-11-21T17:05:00+01:00",
        "author": [{"reference": author_ref}],
        "description": doc.title,
        "securityLabel": [{"coding": [{"system": s, "code": c}]} for s, c in doc.labels],
        "content": [{
            "attachment": {
                "contentType": doc.content_type, "language": "fr-FR", "url": binary_url, "size": len(data),
                "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(), "title": doc.title,
                "creation": "2026-11-21T17:05:00+01:00",
            },
            "format": {"system": doc.format_system, "code": doc.format_code},
        }],
        "context": {
            "period": {"start": doc.service_start},
            "facilityType": {"coding": [{"system": doc.facility[0], "code": doc.facility[1]}]},
            "practiceSetting": {"coding": [{"system": doc.setting[0], "code": doc.setting[1]}]},
            "sourcePatientInfo": {"reference": patient_ref},
        },
    }
    if doc.replaces:
        resource["relatesTo"] = [{"code": "replaces", "target": {"reference": doc.replaces}}]
    return resource


def provide_bundle(patient_ref: str, author_ref: str, *docs: Doc) -> dict:
    """One SubmissionSet, each document with its Binary; urn:uuid references inside the bundle."""
    entries = []
    items = []
    for doc in docs:
        doc_url, bin_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        items.append({"item": {"reference": doc_url}})
        entries.append({"fullUrl": doc_url, "resource": document_reference(doc, patient_ref, author_ref, bin_url),
                        "request": {"method": "POST", "url": "DocumentReference"}})
        entries.append({"fullUrl": bin_url, "resource": {
            "resourceType": "Binary", "contentType": doc.content_type,
            "data": base64.b64encode(doc.bytes()).decode()}, "request": {"method": "POST", "url": "Binary"}})
    submission_set = {
        "resourceType": "List",
        "extension": [{"url": SOURCE_ID, "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.7.1"}}],
        "identifier": [{"use": "usual", "system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
        "status": "current",
        "mode": "working",
        "title": "Lot de soumission",
        "code": {"coding": [{"system": MHD_LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": patient_ref},
        "date": "2026-11-21T17:06:00+01:00",
        "source": {"reference": author_ref},
        "entry": items,
    }
    entries.insert(0, {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": submission_set,
                       "request": {"method": "POST", "url": "List"}})
    return {"resourceType": "Bundle", "type": "transaction",
            "meta": {"profile": ["https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"]},
            "entry": entries}


def entry_of(bundle: dict, resource_type: str, n: int = 0) -> dict:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type][n]
