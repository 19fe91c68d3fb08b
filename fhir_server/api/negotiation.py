"""Content negotiation and serialisation: the only place that knows about HTTP bodies."""

from __future__ import annotations

import base64

import orjson
from flask import Request, Response

from fhir_server.fhir.errors import FhirError
from fhir_server.interactions.context import Result

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
JSON_FORMATS = ("json", "application/json", "application/fhir+json", "application/json+fhir")
PATCH_JSON = "application/json-patch+json"


def wants_json(request: Request) -> bool:
    """True when the client accepts FHIR JSON; 406 when it only accepts formats we do not serve."""
    fmt = request.args.get("_format")
    if fmt:
        if fmt.split(";")[0].strip() in JSON_FORMATS:
            return True
        raise FhirError(406, f"_format '{fmt}' is not served; this server speaks FHIR JSON only.", "not-supported")
    accept = request.accept_mimetypes
    if not accept or accept.provided is False:
        return True
    for mimetype, quality in accept:
        if quality > 0 and mimetype.split(";")[0].strip().lower() in JSON_TYPES + ("*/*", "application/*"):
            return True
    raise FhirError(406, "The Accept header asks for a format this server does not serve (FHIR JSON only).", "not-supported")


def wants_raw_binary(request: Request) -> bool:
    """A Binary read returns the raw bytes unless the client asks for a FHIR format."""
    if request.args.get("_format"):
        return False
    best = request.accept_mimetypes.best
    return bool(best) and best not in JSON_TYPES


def request_json(request: Request):
    """The JSON body of a FHIR write; 415 when it is not JSON."""
    from fhir_server.fhir.validation import parse_json

    content_type = (request.mimetype or "").lower()
    if content_type and content_type not in JSON_TYPES:
        raise FhirError(415, f"Content-Type '{content_type}' is not supported; send {FHIR_JSON}.", "not-supported")
    return parse_json(request.get_data(cache=False))


def request_patch(request: Request):
    from fhir_server.fhir.validation import parse_json

    content_type = (request.mimetype or "").lower()
    if content_type != PATCH_JSON:
        raise FhirError(
            415, f"PATCH accepts {PATCH_JSON} (JSON Patch); got '{content_type or 'no Content-Type'}'.", "not-supported"
        )
    return parse_json(request.get_data(cache=False))


def binary_from_raw(request: Request) -> dict:
    """POST/PUT /Binary with a non-FHIR body: the bytes become a Binary resource."""
    return {
        "resourceType": "Binary",
        "contentType": request.mimetype or "application/octet-stream",
        "data": base64.b64encode(request.get_data(cache=False)).decode("ascii"),
    }


def fhir_response(result: Result, pretty: bool = False) -> Response:
    if result.raw is not None:
        response = Response(result.raw, status=result.status, mimetype=result.raw_content_type)
    elif result.resource is None:
        response = Response(status=result.status)
    else:
        option = orjson.OPT_INDENT_2 if pretty else 0
        body = orjson.dumps(result.resource, option=option)
        response = Response(body, status=result.status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for name, value in result.headers.items():
        response.headers[name] = value
    return response
