"""DMP document rules at write time (IHE MHD / ANS PDSm): resubmission, replacement, patient uploads."""

from __future__ import annotations

import base64
import binascii
import copy

from fhir_server.fhir.errors import FhirError, Issue, conflict, unprocessable
from fhir_server.fhir.pdsm import sha1_base64

TRE_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
ADVANCE_DIRECTIVES = (TRE_A05, "EXPPAT_3")
PATIENT_UPLOAD_TYPES = {f"DOCPAT0{i}" for i in range(1, 10)}
MAX_PATIENT_UPLOAD_BYTES = 5 * 1024 * 1024
# What patients may upload, recognised by the bytes themselves (magic numbers), not the header.
MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "text/rtf": (b"{\\rtf",),
    "application/rtf": (b"{\\rtf",),
}


def sniff(data: bytes) -> str | None:
    """The content type the bytes show (plain text: valid UTF-8 without control characters)."""
    for content_type, signatures in MAGIC.items():
        if any(data.startswith(sig) for sig in signatures):
            return "text/rtf" if content_type == "application/rtf" else content_type
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "text/plain"
    return None


def check_patient_upload(content_type: str | None, data: bytes, expression: str) -> None:
    """A patient's upload: PDF, JPEG, PNG, TIFF, plain text or RTF up to 5 MB, as the bytes say."""
    if len(data) > MAX_PATIENT_UPLOAD_BYTES:
        raise FhirError(413, f"A patient upload is limited to {MAX_PATIENT_UPLOAD_BYTES // (1024 * 1024)} MB.", "too-costly", [expression])
    declared = (content_type or "").split(";")[0].strip().lower()
    declared = "text/rtf" if declared == "application/rtf" else declared
    actual = sniff(data)
    if actual is None or actual != declared:
        raise unprocessable([Issue(
            f"The uploaded content is {actual or 'of an accepted type only in name'}, not {declared or 'declared'}: "
            "patients may upload PDF, JPEG, PNG, TIFF, plain text or RTF.", "value", expression=[expression])])


def is_patient_upload(document: dict) -> bool:
    codes = {c.get("code") for c in (document.get("type") or {}).get("coding", [])}
    return bool(codes & PATIENT_UPLOAD_TYPES)


TRE_A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
PATIENT_PRODUCER = {"coding": [{"system": TRE_A00, "code": "EXP_PATIENT", "display": "Expression personnelle du patient"}]}


def with_patient_producer(document: dict) -> dict:
    """A patient's upload (DOCPAT01..09) is produced by EXP_PATIENT: facility and practice setting
    default to it, and any other producer is refused."""
    if not is_patient_upload(document):
        return document
    document = copy.deepcopy(document)
    context = document.setdefault("context", {})
    for element in ("facilityType", "practiceSetting"):
        codes = {(c.get("system"), c.get("code")) for c in (context.get(element) or {}).get("coding", [])}
        if not codes:
            context[element] = copy.deepcopy(PATIENT_PRODUCER)
        elif (TRE_A00, "EXP_PATIENT") not in codes:
            raise unprocessable([Issue("A patient's document (DOCPAT) is produced by EXP_PATIENT (TRE_A00).",
                                       "business-rule", expression=[f"DocumentReference.context.{element}"])])
    return document


def inline_attachments(document: dict) -> list[tuple[int, dict]]:
    return [(i, c["attachment"]) for i, c in enumerate(document.get("content", [])) if (c.get("attachment") or {}).get("data")]


def decode(data: str, expression: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise unprocessable([Issue(f"{expression} is not valid base64.", "value", expression=[expression])]) from None


def check_declared_size_and_hash(attachment: dict, data: bytes, expression: str) -> None:
    """ITI-105: size and hash, when the publisher gives them, must be those of the inline bytes."""
    issues = []
    if "size" in attachment and attachment["size"] != len(data):
        issues.append(Issue(f"size {attachment['size']} differs from the {len(data)} bytes sent.", "value",
                            expression=[f"{expression}.size"]))
    if "hash" in attachment and attachment["hash"] != sha1_base64(data):
        issues.append(Issue("hash is not the SHA-1 of the bytes sent (base64 of the 20-byte digest).", "value",
                            expression=[f"{expression}.hash"]))
    if issues:
        raise unprocessable(issues)


def subject_patient(document: dict) -> str | None:
    ref = (document.get("subject") or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


def check_resubmission(repository, document: dict, own_id: str | None) -> None:
    """masterIdentifier is unique per patient: the same document sent twice is a resubmission (409)."""
    check_resubmissions(repository, [(document, own_id)])


def check_resubmissions(repository, new_documents: list[tuple[dict, str | None]]) -> None:
    """`check_resubmission` for every document of a bundle."""
    for document, own_id in new_documents:
        master = document.get("masterIdentifier") or {}
        patient = subject_patient(document)
        if not master.get("value") or not patient:
            continue
        # Equalities only: every backend answers them from an index, where FerretDB would read
        # all of the patient's documents to apply an $in of the bundle's identifiers.
        query = {"rt": "DocumentReference", "state": "live", "comp": f"Patient/{patient}",
                 "ix.tk": f"identifier|{master.get('system') or ''}|{master['value']}"}
        for doc in repository.find_docs(query, {"rid": 1}):
            if doc["rid"] != own_id:
                raise conflict(
                    f"A document with masterIdentifier {master['value']} is already in this record "
                    f"(DocumentReference/{doc['rid']}): resubmission refused; send a replacement (relatesTo replaces)."
                )


def replaced_targets(repository, document: dict) -> list[tuple[str, dict]]:
    """The documents this one replaces, each checked (current, same patient): [(id, superseded copy)].
    A new version of the patient's advance directives (EXPPAT_3) replaces the current one implicitly."""
    out = []
    patient = subject_patient(document)
    for i, relation in enumerate(document.get("relatesTo", [])):
        if relation.get("code") != "replaces":
            continue
        ref = (relation.get("target") or {}).get("reference") or ""
        where = [f"DocumentReference.relatesTo[{i}].target"]
        if not ref.startswith("DocumentReference/"):
            raise unprocessable([Issue("A replacement must target a DocumentReference.", "value", expression=where)])
        rid = ref.split("/", 1)[1]
        doc = repository.current_doc("DocumentReference", rid)
        if doc is None or doc["state"] != "live":
            raise unprocessable([Issue(f"The replaced document {ref} does not exist.", "not-found", expression=where)])
        old = doc["res"]
        if old.get("status") != "current":
            raise unprocessable([Issue(f"{ref} is {old.get('status')}: only a current document can be replaced.", "business-rule", expression=where)])
        if subject_patient(old) != patient:
            raise unprocessable([Issue(f"{ref} belongs to another patient.", "business-rule", expression=where)])
        out.append((rid, _superseded(old)))
    if ADVANCE_DIRECTIVES in _type_codes(document) and patient:
        # EXPPAT_3: the patient's advance directives are one document; a new version supersedes the previous
        query = {"rt": "DocumentReference", "state": "live", "comp": f"Patient/{patient}",
                 "ix.tk": f"type|{ADVANCE_DIRECTIVES[0]}|{ADVANCE_DIRECTIVES[1]}"}
        named = {rid for rid, _ in out}
        for doc in repository.find_docs(query, {"rid": 1, "res": 1}):
            if doc["res"].get("status") == "current" and doc["rid"] not in named:
                out.append((doc["rid"], _superseded(doc["res"])))
    return out


def _superseded(document: dict) -> dict:
    superseded = copy.deepcopy(document)
    superseded["status"] = "superseded"
    return superseded


def _type_codes(document: dict) -> set[tuple[str, str]]:
    return {(c.get("system"), c.get("code")) for c in (document.get("type") or {}).get("coding", [])}
