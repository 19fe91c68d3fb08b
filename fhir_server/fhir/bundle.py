"""Building Bundles (searchset, history, batch/transaction responses)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode

from fhir_server.storage.repository import Version, fhir_instant

SUMMARY_ELEMENTS = {
    # Elements marked isSummary in R4 for the stored types (plus the mandatory ones).
    "Patient": ["identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean",
                "deceasedDateTime", "address", "managingOrganization", "link"],
    "Practitioner": ["identifier", "active", "name", "telecom", "address", "gender", "birthDate"],
    "PractitionerRole": ["identifier", "active", "period", "practitioner", "organization", "code",
                         "specialty", "location", "healthcareService", "telecom", "endpoint"],
    "Organization": ["identifier", "active", "type", "name", "alias", "partOf", "endpoint"],
    "RelatedPerson": ["identifier", "active", "patient", "relationship", "name", "telecom", "gender",
                      "birthDate", "address", "period"],
    "DocumentReference": ["masterIdentifier", "identifier", "status", "docStatus", "type", "category",
                          "subject", "date", "author", "authenticator", "custodian", "relatesTo",
                          "description", "securityLabel", "content", "context"],
    "List": ["identifier", "status", "mode", "title", "code", "subject", "encounter", "date", "source"],
    "Consent": ["identifier", "status", "scope", "category", "patient", "dateTime", "performer",
                "organization", "source", "sourceAttachment", "sourceIdentifier", "sourceReference",
                "policyRule", "provision"],
    "AuditEvent": ["type", "subtype", "action", "period", "recorded", "outcome", "purposeOfEvent",
                   "agent", "source", "entity"],
    "Binary": ["contentType", "securityContext"],
}
ALWAYS = ("resourceType", "id", "meta")


def now_instant() -> str:
    return fhir_instant(datetime.now(timezone.utc))


def full_url(base_url: str, version: Version) -> str:
    return f"{base_url}/{version.rt}/{version.rid}"


def subsetted(resource: dict, keep: list[str]) -> dict:
    out = {k: v for k, v in resource.items() if k in ALWAYS or k in keep}
    meta = dict(out.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    tags.append({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"})
    meta["tag"] = tags
    out["meta"] = meta
    return out


def shape(resource: dict, summary: str | None, elements: list[str] | None) -> dict:
    """Apply _summary / _elements to one resource."""
    if summary == "true":
        return subsetted(resource, SUMMARY_ELEMENTS.get(resource["resourceType"], []))
    if summary == "text":
        return subsetted(resource, ["text"])
    if summary == "data":
        return subsetted(resource, [k for k in resource if k != "text"])
    if elements:
        return subsetted(resource, elements)
    return resource


def link(relation: str, url: str) -> dict:
    return {"relation": relation, "url": url}


def page_url(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}" if params else base


def new_bundle(bundle_type: str) -> dict:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": bundle_type,
    }
