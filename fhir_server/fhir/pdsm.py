"""ANS PDSm (IHE MHD Comprehensive) rules that no single-resource profile can express.

- the type-to-class correspondence of DMP documents (ConceptMap ASS_X16);
- the shape of an ITI-65 Provide Document Bundle: one SubmissionSet, its documents, their Binaries,
  the attachment's size and SHA-1 hash checked against the bytes, one patient, no document twice.

Profiles (cardinalities, value sets, invariants) are checked by `validation.py`; this module adds
what needs the whole bundle or a concept map.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import lru_cache

from fhir_server.fhir.errors import Issue
from fhir_server.fhir.profiles import conformance_resources
from fhir_server.fhir.resource_types import PROFILE_BASE

MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
COMPREHENSIVE_DOCUMENT = PROFILE_BASE + "dmp-documentreference-comprehensive"
SUBMISSION_SET = PROFILE_BASE + "dmp-submissionset"
TYPE_CLASS_MAP = "ASS-X16-CorrespondanceType-Classe-DMP"
PROVIDE_BUNDLE_TYPES = {"List", "DocumentReference", "Binary"}


@lru_cache(maxsize=None)
def class_of_type() -> tuple[str, dict[tuple[str, str], str]]:
    concept_map = conformance_resources("ConceptMap")[TYPE_CLASS_MAP]
    classes = {}
    target_system = ""
    for group in concept_map["group"]:
        target_system = group["target"]
        for element in group["element"]:
            classes[(group["source"], element["code"])] = element["target"][0]["code"]
    return target_system, classes


def type_class_issues(document: dict) -> list[Issue]:
    """A document's category must be the class ASS_X16 gives its type (when both are DMP-coded)."""
    class_system, classes = class_of_type()
    expected = {
        classes[(c.get("system"), c.get("code"))]
        for c in (document.get("type") or {}).get("coding", [])
        if (c.get("system"), c.get("code")) in classes
    }
    if not expected:
        return []
    issues = []
    for i, category in enumerate(document.get("category") or []):
        given = {c.get("code") for c in category.get("coding", []) if c.get("system") == class_system}
        if given and not given & expected:
            issues.append(Issue(
                f"The document type belongs to class {', '.join(sorted(expected))} (ASS_X16), not {', '.join(sorted(given))}.",
                "business-rule", expression=[f"DocumentReference.category[{i}]"]))
    return issues


def is_submission_set(resource: dict | None) -> bool:
    if not isinstance(resource, dict) or resource.get("resourceType") != "List":
        return False
    code = resource.get("code")  # not validated yet: any JSON
    codings = code.get("coding") if isinstance(code, dict) else None
    return isinstance(codings, list) and any(
        isinstance(c, dict) and c.get("system") == MHD_LIST_TYPES and c.get("code") == "submissionset" for c in codings
    )


def is_provide_bundle(entries: list[dict]) -> bool:
    """An ITI-65 Provide Document Bundle is a transaction carrying a SubmissionSet List."""
    return any(is_submission_set(e.get("resource")) for e in entries)


def _obj(value) -> dict:
    """The bundle is not validated yet when it is checked as a whole: treat wrong shapes as absent
    (the per-entry validation names them)."""
    return value if isinstance(value, dict) else {}


def _objs(value) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _decoded(binary: dict) -> bytes | None:
    try:
        return base64.b64decode(binary.get("data") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


def provide_bundle_issues(entries: list[dict]) -> list[Issue]:
    """Issues of an ITI-65 bundle as a whole (each entry's own profile is checked elsewhere)."""
    issues: list[Issue] = []

    def problem(i: int, where: str, message: str, code: str = "business-rule") -> None:
        issues.append(Issue(f"Bundle.entry[{i}]: {message}", code, expression=[f"Bundle.entry[{i}]{where}"]))

    submission_sets, documents, binaries = [], [], {}
    for i, entry in enumerate(entries):
        resource = _obj(entry.get("resource"))
        method = _obj(entry.get("request")).get("method")
        rt = resource.get("resourceType")
        if method == "POST" and rt not in PROVIDE_BUNDLE_TYPES:
            problem(i, ".resource", f"an ITI-65 bundle carries a SubmissionSet, DocumentReferences, Binaries and "
                    f"Folders only, not {rt}.", "structure")
        if method != "POST":
            continue  # MHD's UpdateDocumentRefs entries (PATCH/PUT of a replaced document)
        if is_submission_set(resource):
            submission_sets.append((i, entry))
        elif rt == "DocumentReference":
            documents.append((i, entry))
        elif rt == "Binary" and entry.get("fullUrl"):
            binaries[entry["fullUrl"]] = (i, resource)
    if len(submission_sets) != 1:
        issues.append(Issue(f"An ITI-65 bundle carries exactly one SubmissionSet List, not {len(submission_sets)}.",
                            "structure", expression=["Bundle.entry"]))
        return issues
    if not documents:
        issues.append(Issue("An ITI-65 bundle carries at least one new DocumentReference.", "structure",
                            expression=["Bundle.entry"]))
    s_index, s_entry = submission_sets[0]
    submission_set = s_entry["resource"]
    patient = _obj(submission_set.get("subject")).get("reference")
    listed = {_obj(e.get("item")).get("reference") for e in _objs(submission_set.get("entry"))}
    masters: dict[tuple, int] = {}
    for i, entry in documents:
        document = entry["resource"]
        if entry.get("fullUrl") not in listed:
            problem(i, ".fullUrl", "the document is not an entry of the SubmissionSet.")
        if patient and _obj(document.get("subject")).get("reference") != patient:
            problem(i, ".resource.subject", f"the document's subject is not the SubmissionSet's patient {patient}.")
        master = _obj(document.get("masterIdentifier"))
        key = (str(master.get("system")), str(master.get("value")))
        if master.get("value"):
            if key in masters:
                problem(i, ".resource.masterIdentifier",
                        f"masterIdentifier {master['value']} is also entry {masters[key]}'s: a document is sent once.")
            masters[key] = i
        for c, content in enumerate(_objs(document.get("content"))):
            _check_attachment(problem, i, c, _obj(content.get("attachment")), binaries)
    document_urls = {e.get("fullUrl") for _, e in documents}
    for reference in sorted(r for r in listed if isinstance(r, str)):
        if reference not in document_urls and not reference.startswith("DocumentReference/"):
            problem(s_index, ".resource.entry", f"the SubmissionSet lists {reference}, which is not a document of this bundle.")
    return issues


def _check_attachment(problem, i: int, c: int, attachment: dict, binaries: dict) -> None:
    where = f".resource.content[{c}].attachment"
    url = attachment.get("url")
    if not url or not isinstance(url, str):
        return  # the comprehensive profile already says it is required
    if url not in binaries:
        problem(i, f"{where}.url", f"{url} is not a Binary of this bundle: the document's bytes travel with it.")
        return
    b_index, binary = binaries[url]
    data = _decoded(binary)
    if data is None:
        problem(b_index, ".resource.data", "Binary.data is not valid base64.", "value")
        return
    if attachment.get("contentType") and binary.get("contentType") != attachment["contentType"]:
        problem(i, f"{where}.contentType",
                f"contentType {attachment['contentType']} differs from the Binary's {binary.get('contentType')}.")
    if "size" in attachment and attachment["size"] != len(data):
        problem(i, f"{where}.size", f"size {attachment['size']} differs from the {len(data)} bytes of the Binary.")
    if "hash" in attachment:
        if attachment["hash"] != sha1_base64(data):
            problem(i, f"{where}.hash", "hash is not the SHA-1 of the Binary's bytes (base64 of the 20-byte digest).")


def sha1_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()
