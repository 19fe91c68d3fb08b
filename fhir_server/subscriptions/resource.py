"""What this server accepts in a Subscription (FHIR R4) and how it reads it.

- `channel.type` rest-hook only (websocket, email, sms and message are refused with a 422 naming
  the element); `channel.endpoint` an http(s) URL without credentials (loopback only when the
  settings allow it); `channel.header` "Name: value" strings the server adds to each request;
  `channel.payload` absent (empty notification) or application/fhir+json (the resource itself).
- `criteria` "Type?search-parameters": any search of that type this server understands
  (unknown types, unknown parameters and result parameters such as _sort or _include are 422s).
- `status` belongs to the server: a client asks for `requested` (or `active`) and gets `active`,
  or turns the subscription `off`; `error` and the `error` text are set by the delivery worker and
  kept when a client writes the subscription back unchanged (status error), cleared otherwise.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from fhir_server.fhir.errors import FhirError, Issue
from fhir_server.fhir.resource_types import RESOURCE_TYPES
from fhir_server.search.compiler import split_values, unescape
from fhir_server.search.extract import reference_target

REST_HOOK = "rest-hook"
CHANNEL_TYPES = ("rest-hook", "websocket", "email", "sms", "message")  # R4 subscription-channel-type
FULL_RESOURCE = "application/fhir+json"
# Notifications are sent for clinical and directory writes, not for the server's own records.
NOT_NOTIFIED = {
    "AuditEvent": "audit events are written by the server itself",
    "Subscription": "a subscription cannot watch subscriptions",
}
# Result parameters shape a search response: a notification has none.
RESULT_PARAMS = {
    "_sort", "_count", "_include", "_revinclude", "_summary", "_total", "_elements", "_contained",
    "_containedType", "_format", "_pretty", "_page", "_cursor", "_type",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the HTTP client owns: a subscription may not set them.
RESERVED_HEADERS = {
    "host", "content-length", "content-type", "transfer-encoding", "connection", "expect", "upgrade",
    "te", "trailer", "keep-alive", "proxy-authorization", "proxy-connection",
}


@dataclass(frozen=True)
class Criteria:
    resource_type: str
    params: list[tuple[str, str]]


def _issue(message: str, element: str, code: str = "value") -> Issue:
    return Issue(message, code, "error", [f"Subscription.{element}"])


def parse_criteria(text: str, base_url: str | None) -> Criteria:
    """'DocumentReference?patient=Patient/123' (leading '/' or the server's base URL tolerated)."""
    text = (text or "").strip()
    if base_url and text.startswith(base_url.rstrip("/") + "/"):
        text = text[len(base_url.rstrip("/")) + 1 :]
    path, _, query = text.lstrip("/").partition("?")
    if not path or "/" in path or not path[0].isupper():
        raise _criteria_error(f"criteria '{text}' must read Type?parameters, e.g. DocumentReference?patient=Patient/123.")
    if path not in RESOURCE_TYPES:
        raise _criteria_error(f"criteria: unknown resource type '{path}' (this server stores "
                              f"{', '.join(t for t in RESOURCE_TYPES if t not in NOT_NOTIFIED)}).")
    if path in NOT_NOTIFIED:
        raise _criteria_error(f"criteria: no notifications for {path}: {NOT_NOTIFIED[path]}.")
    params = parse_qsl(query, keep_blank_values=True)
    for name, _ in params:
        base = name.split(".")[0].split(":")[0]
        if base in RESULT_PARAMS:
            raise _criteria_error(f"criteria: '{name}' is a result parameter; criteria take search parameters only.")
    return Criteria(path, params)


def criteria_patients(criteria: Criteria) -> list[str] | None:
    """The patients ("Patient/x") the criteria are confined to by a `patient` or `subject`
    parameter, or None. Only routes writes (by compartment) to the subscriptions worth testing:
    the criteria themselves still decide, so this only has to be a superset."""
    for name, raw in criteria.params:
        code, _, modifier = name.partition(":")
        if "." in name or code not in ("patient", "subject") or modifier not in ("", "Patient"):
            continue
        refs: list[str] = []
        for value in split_values(raw):
            value = unescape(value).strip()
            if "/" in value:
                target = reference_target(value)
            elif code == "patient" or modifier == "Patient":
                target = f"Patient/{value}"
            else:
                target = ""  # a bare subject id may name a Group or a Device
            if not target.startswith("Patient/") or target.count("/") != 1:
                break
            refs.append(target)
        else:
            if refs:
                return sorted(set(refs))
    return None


def _criteria_error(message: str) -> FhirError:
    return FhirError(422, message, issues=[_issue(message, "criteria")])


def compile_criteria(engine, criteria: Criteria, base_url: str | None) -> dict:
    """The MongoDB filter of the criteria (no access filter: that is the subscriber's, at delivery).
    Unknown parameters and malformed values are 422s naming Subscription.criteria."""
    try:
        request = engine.parse(criteria.resource_type, criteria.params, strict=True)
        return engine.build_filter(request, (base_url.rstrip("/"),) if base_url else ())
    except FhirError as err:
        if err.status >= 500:
            raise
        raise _criteria_error(f"criteria: {err.diagnostics}") from None


def check_channel(resource: dict, allow_loopback: bool) -> list[Issue]:
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind != REST_HOOK:
        why = "is not an R4 channel type" if kind not in CHANNEL_TYPES else "is not supported by this server"
        return [_issue(f"channel.type '{kind}' {why}: only rest-hook is.", "channel.type", "not-supported")]
    issues = []
    endpoint = channel.get("endpoint") or ""
    problem = endpoint_problem(endpoint, allow_loopback)
    if problem:
        issues.append(_issue(f"channel.endpoint '{endpoint}' {problem}.", "channel.endpoint"))
    payload = channel.get("payload")
    if payload not in (None, FULL_RESOURCE):
        issues.append(_issue(f"channel.payload '{payload}' is not supported: leave it out (empty notification) "
                             f"or use {FULL_RESOURCE}.", "channel.payload", "not-supported"))
    for i, header in enumerate(channel.get("header") or []):
        problem = header_problem(header)
        if problem:
            issues.append(_issue(f"channel.header[{i}] {problem}.", f"channel.header[{i}]"))
    return issues


def endpoint_problem(endpoint: str, allow_loopback: bool) -> str | None:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http or https URL"
    if parts.username or parts.password:
        return "must not carry credentials (send them in channel.header)"
    if parts.fragment:
        return "must not have a fragment"
    if not allow_loopback and is_loopback(parts.hostname):
        return "is a loopback address, which this server does not call"
    return None


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def header_problem(header) -> str | None:
    if not isinstance(header, str) or ":" not in header:
        return "must read 'Name: value'"
    name, _, value = header.partition(":")
    if not _HEADER_NAME.match(name.strip()) or name != name.strip():
        return f"has an invalid header name '{name}'"
    if name.strip().lower() in RESERVED_HEADERS:
        return f"may not set '{name.strip()}' (set by the server)"
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in value):
        return "has a control character in its value"
    return None


def header_pairs(resource: dict) -> list[tuple[str, str]]:
    pairs = []
    for header in (resource.get("channel") or {}).get("header") or []:
        name, _, value = header.partition(":")
        pairs.append((name.strip(), value.strip()))
    return pairs


def with_server_status(resource: dict, current: dict | None) -> dict:
    """The status the server stores for what the client sent (see the module docstring)."""
    out = dict(resource)
    asked = resource.get("status")
    if asked == "off":
        out.pop("error", None)
    elif asked == "error" and current is not None and current.get("status") == "error":
        if current.get("error"):
            out["error"] = current["error"]
        else:
            out.pop("error", None)
    else:
        out["status"] = "active"  # requested (or active / error asked by the client): accepted
        out.pop("error", None)
    return out


def check_status(resource: dict) -> list[Issue]:
    status = resource.get("status")
    if status not in ("requested", "active", "error", "off"):
        return [_issue(f"status '{status}' is not one of requested, active, error, off.", "status")]
    return []
