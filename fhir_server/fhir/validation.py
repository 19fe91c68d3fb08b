"""Parsing and validation of incoming resources.

Two layers: the R4B structural models of `fhir.resources` (datatypes, cardinalities, unknown
elements), then the DMP profiles that apply (fhir/profiles.py: JSON Schema compiled from the
StructureDefinitions, their FHIRPath invariants such as the INS-NIR key, and a few coded rules),
which the structural models do not check.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.fhir import pdsm, profiles
from fhir_server.fhir.errors import FhirError, Issue, bad_request, unprocessable
from fhir_server.fhir.resource_types import PROFILE_BASE, get_resource_type


def parse_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON is a 400."""
    if not body:
        raise bad_request("The request body is empty; a FHIR JSON resource was expected.", code="structure")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}", code="structure") from None


def _fhirpath(resource_type: str, loc: tuple) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("__root__",):
            continue
        else:
            path += f".{part}"
    return path


def structural_issues(resource: dict) -> list[Issue]:
    """Issues found by the R4B model of the resource type (empty when valid)."""
    resource_type = resource["resourceType"]
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p != "resource_type")
            issues.append(
                Issue(
                    f"{err['msg']}",
                    code="structure" if err["type"] == "extra_forbidden" else "value",
                    expression=[_fhirpath(resource_type, loc)],
                )
            )
        return issues
    except (ValueError, TypeError) as exc:  # raised by some fhir.resources validators outside pydantic
        return [Issue(str(exc), code="value", expression=[resource_type])]
    return []


@lru_cache(maxsize=None)
def _schema_validator(profile_url: str) -> jsonschema.protocols.Validator:
    sd = profiles.structure_definition(profile_url)
    schema = json.loads(profiles.schema_path(sd).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _schema_issue(resource_type: str, err: jsonschema.ValidationError) -> Issue:
    where = list(err.absolute_path)
    if err.validator == "required":
        where.append(err.message.split("'")[1])  # jsonschema: "'<name>' is a required property", one per name
        return Issue(f"{_fhirpath(resource_type, tuple(where))} is required by the profile (min 1).", "required",
                     expression=[_fhirpath(resource_type, tuple(where))])
    if err.validator == "contains" and where and where[-1] == "coding":
        where.pop()  # a CodeableConcept's binding: name the element, not its coding list
    description = err.schema.get("description") if isinstance(err.schema, dict) else None
    return Issue(description or err.message, "code-invalid" if "value set" in (description or "") else "value",
                 expression=[_fhirpath(resource_type, tuple(where))])


# Rules of a profile that need code rather than a schema or a FHIRPath invariant.
PROFILE_RULES = {
    PROFILE_BASE + "dmp-documentreference": pdsm.type_class_issues,
}


def applicable_profiles(resource: dict, extra: tuple[str, ...] = ()) -> list[str]:
    """The DMP profile of the type, the shipped profiles the resource claims, and the extra ones asked for."""
    rt = get_resource_type(resource.get("resourceType"))
    meta = resource.get("meta")
    claims = meta.get("profile") if isinstance(meta, dict) else None  # may be malformed: structure is checked apart
    claimed = [p for p in claims if isinstance(p, str) and profiles.structure_definition(p)] if isinstance(claims, list) else []
    urls = ([rt.profile] if rt and rt.profile else []) + claimed + list(extra)
    return [u for i, u in enumerate(urls) if u not in urls[:i]]


def profile_issues(resource: dict, extra_profiles: tuple[str, ...] = ()) -> list[Issue]:
    """Issues from the DMP profiles that apply: compiled JSON Schema, FHIRPath invariants, rules."""
    rt = resource["resourceType"]
    issues: list[Issue] = []
    seen: set[tuple] = set()
    for url in applicable_profiles(resource, extra_profiles):
        sd = profiles.structure_definition(url)
        if sd["type"] != rt:
            issues.append(Issue(f"Profile {url} constrains {sd['type']}, not {rt}.", "invalid", expression=[rt]))
            continue
        found = [_schema_issue(rt, e) for e in sorted(_schema_validator(url).iter_errors(resource),
                                                      key=lambda e: list(map(str, e.absolute_path)))]
        found += [Issue(f"{inv.key}: {inv.human}", "invariant", expression=[where])
                  for inv, where in profiles.failed_invariants(url, resource)]
        rule = PROFILE_RULES.get(url)
        found += rule(resource) if rule else []
        for issue in found:  # a profile repeats its ancestors' rules: report each problem once
            key = (issue.diagnostics, tuple(issue.expression or ()))
            if key not in seen:
                seen.add(key)
                issues.append(issue)
    return issues


def check_resource_shape(resource: Any, expected_type: str | None = None) -> str:
    """The minimal envelope checks (400s): a JSON object with the expected resourceType."""
    if not isinstance(resource, dict):
        raise bad_request("A FHIR resource must be a JSON object.", code="structure")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise bad_request("The resource has no resourceType.", ["resourceType"], code="structure")
    if expected_type and resource_type != expected_type:
        raise bad_request(
            f"resourceType '{resource_type}' does not match the endpoint's type '{expected_type}'.",
            ["resourceType"],
        )
    return resource_type


def validate_resource(resource: dict, extra_profiles: tuple[str, ...] = ()) -> None:
    """Raise 422 with one issue per problem when the resource breaks R4 or its DMP profiles."""
    issues = issues_for(resource, extra_profiles)
    if issues:
        raise unprocessable(issues)


def issues_for(resource: dict, extra_profiles: tuple[str, ...] = ()) -> list[Issue]:
    """All issues without raising (used by $validate and bundles)."""
    return structural_issues(resource) + profile_issues(resource, extra_profiles)


__all__ = [
    "FhirError",
    "parse_json",
    "check_resource_shape",
    "validate_resource",
    "issues_for",
]
