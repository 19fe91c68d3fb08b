"""Parsing and validation of incoming resources.

Two layers: the R4B structural models of `fhir.resources` (datatypes, cardinalities, unknown
elements), then the DMP profile rules kept as JSON Schema in `profiles/schemas/` (value sets,
INS identifier with a valid NIR key...), which the structural models do not check.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pydantic
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.fhir import nir
from fhir_server.fhir.errors import FhirError, Issue, bad_request, unprocessable

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"

format_checker = jsonschema.FormatChecker()


@format_checker.checks("fr-nir")
def _is_nir(value: object) -> bool:
    return isinstance(value, str) and nir.is_valid_nir(value)


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
def _profile_validator(resource_type: str) -> jsonschema.protocols.Validator | None:
    path = PROFILES_DIR / "schemas" / f"{resource_type}.schema.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=format_checker)


def _json_path_to_fhirpath(resource_type: str, path) -> str:
    return _fhirpath(resource_type, tuple(path))


def profile_issues(resource: dict) -> list[Issue]:
    """Issues from the DMP profile of the resource type (JSON Schema in profiles/schemas)."""
    validator = _profile_validator(resource["resourceType"])
    if validator is None:
        return []
    issues = []
    for err in sorted(validator.iter_errors(resource), key=lambda e: list(e.absolute_path)):
        message = err.schema.get("description") if err.validator in ("format", "contains") else None
        issues.append(
            Issue(
                message or err.message,
                code="invariant" if err.validator in ("format", "contains") else "value",
                expression=[_json_path_to_fhirpath(resource["resourceType"], err.absolute_path)],
            )
        )
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


def validate_resource(resource: dict) -> None:
    """Raise 422 with one issue per problem when the resource breaks R4 or its DMP profile."""
    issues = structural_issues(resource)
    if not issues:
        issues = profile_issues(resource)
    if issues:
        raise unprocessable(issues)


def issues_for(resource: dict) -> list[Issue]:
    """All issues without raising (used by $validate)."""
    return structural_issues(resource) + profile_issues(resource)


__all__ = [
    "FhirError",
    "parse_json",
    "check_resource_shape",
    "validate_resource",
    "issues_for",
]
