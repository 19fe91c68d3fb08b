"""The OpenAPI description of the FHIR REST API, served at /openapi.json by flask-smorest.

Minimal and honest: a resource is a JSON object with a `resourceType` (the server validates the
rest against R4 and the DMP profile), every error is an OperationOutcome in application/fhir+json,
and each route lists the statuses it really answers with. tests/api/test_openapi_schemathesis.py
holds the server to it.

The SMART / OAuth 2.0 endpoints (/oauth2/*, .well-known/*) are not in this document: they are
protocol endpoints (form posts, redirects, HTML pages) described by their own discovery documents
(`{base}/.well-known/smart-configuration`, `/.well-known/openid-configuration`).
"""

from __future__ import annotations

from fhir_server.fhir.resource_types import RESOURCE_TYPES

FHIR_JSON = "application/fhir+json"
ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"
TYPES = list(RESOURCE_TYPES)


def _ref(section: str, name: str) -> dict:
    return {"$ref": f"#/components/{section}/{name}"}


def _schema(name: str) -> dict:
    return _ref("schemas", name)


# ------------------------------------------------------------------ schemas
_RESOURCE_TYPE = {"type": "string", "pattern": "^[A-Z][A-Za-z]+$"}

SCHEMAS: dict[str, dict] = {
    "Resource": {
        "type": "object",
        "description": "A FHIR R4 resource in JSON. Only the envelope is described here: the server "
        "validates the content against R4 and the DMP profiles (422 with an OperationOutcome otherwise).",
        "required": ["resourceType"],
        "properties": {
            "resourceType": _RESOURCE_TYPE,
            "id": {"type": "string", "pattern": ID_PATTERN},
            "meta": {"type": "object"},
        },
    },
    "OperationOutcome": {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"type": "string", "enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "CapabilityStatement": {
        "type": "object",
        "required": ["resourceType", "status", "kind", "fhirVersion", "format"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["CapabilityStatement"]},
            "status": {"type": "string"},
            "kind": {"type": "string", "enum": ["instance"]},
            "fhirVersion": {"type": "string", "enum": ["4.0.1"]},
            "format": {"type": "array", "items": {"type": "string"}},
            "rest": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Bundle": {
        "type": "object",
        "description": "A Bundle answered by the server (searchset, history, batch-response, transaction-response).",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "id": {"type": "string"},
            "type": {"type": "string", "enum": ["searchset", "history", "batch-response", "transaction-response"]},
            "total": {"type": "integer", "minimum": 0},
            "link": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["relation", "url"],
                    "properties": {"relation": {"type": "string"}, "url": {"type": "string"}},
                },
            },
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "fullUrl": {"type": "string"},
                        "resource": _schema("Resource"),
                        "search": {
                            "type": "object",
                            "properties": {"mode": {"type": "string", "enum": ["match", "include", "outcome"]}},
                        },
                        "request": {"type": "object", "required": ["method", "url"]},
                        "response": {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"type": "string"}, "outcome": _schema("OperationOutcome")},
                        },
                    },
                },
            },
        },
    },
    "BatchOrTransaction": {
        "type": "object",
        "description": "A batch or transaction Bundle: each entry has a request (method and url "
        "relative to the base) and, for writes, a resource.",
        "required": ["resourceType", "type"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["Bundle"]},
            "type": {"type": "string", "enum": ["batch", "transaction"]},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "fullUrl": {"type": "string"},
                        "resource": _schema("Resource"),
                        "request": {
                            "type": "object",
                            "required": ["method", "url"],
                            "properties": {
                                "method": {"type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
                                "url": {"type": "string"},
                                "ifMatch": {"type": "string"},
                                "ifNoneExist": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
    "JsonPatch": {
        "type": "array",
        "description": "RFC 6902 JSON Patch. The patched resource is validated like an update.",
        "items": {
            "type": "object",
            "required": ["op", "path"],
            "properties": {
                "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"]},
                "path": {"type": "string"},
                "from": {"type": "string"},
                "value": {},
            },
        },
    },
    "SearchForm": {
        "type": "object",
        "description": "Search parameters as a form (the same as in the query string).",
        "properties": {
            "_id": {"type": "string"},
            "_lastUpdated": {"type": "string"},
            "_count": {"type": "string", "pattern": "^[0-9]+$"},
            "_sort": {"type": "string"},
            "_summary": {"type": "string", "enum": ["true", "false", "text", "data", "count"]},
            "_total": {"type": "string", "enum": ["none", "estimate", "accurate"]},
        },
    },
}

# ------------------------------------------------------------------ responses
ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed request: bad JSON, wrong resourceType, bad id, bad search parameter."),
    401: ("Unauthorized", "No valid SMART access token (when the server requires one); WWW-Authenticate says why."),
    403: ("Forbidden", "The token's scopes or the DMP access policy refuse this interaction."),
    404: ("NotFound", "Unknown resource type, or a resource that does not exist or that the caller may not see."),
    405: ("MethodNotAllowed", "The interaction is not allowed on this type (AuditEvent is read-only)."),
    406: ("NotAcceptable", "Accept or _format asks for something other than FHIR JSON."),
    409: ("Conflict", "Version conflict or a write that contradicts stored data."),
    410: ("Gone", "The resource was deleted."),
    412: ("PreconditionFailed", "If-Match does not name the current version, or conditional criteria match several resources."),
    413: ("PayloadTooLarge", "The request body is larger than the server accepts."),
    415: ("UnsupportedMediaType", "The request body is not in a media type this route accepts."),
    416: ("RangeNotSatisfiable", "The Range header cannot be satisfied."),
    422: ("Unprocessable", "The resource breaks FHIR R4 or the DMP profile; each issue has its FHIRPath."),
    500: ("ServerError", "Unexpected failure; the incident is logged and the body says no more."),
}

RESPONSES: dict[str, dict] = {
    name: {"description": description, "content": {FHIR_JSON: {"schema": _schema("OperationOutcome")}}}
    for name, description in ERRORS.values()
}
RESPONSES["Unauthorized"]["headers"] = {
    "WWW-Authenticate": {"schema": {"type": "string", "pattern": "^Bearer "}, "required": True}
}

HEADERS: dict[str, dict] = {
    "ETag": {"description": "Version of the resource.", "schema": {"type": "string", "pattern": '^W/"[0-9]+"$'}},
    "Location": {
        "description": "Absolute URL of the version written: {base}/{type}/{id}/_history/{vid}.",
        "required": True,
        "schema": {"type": "string"},
    },
}

# ------------------------------------------------------------------ parameters
PARAMETERS: dict[str, dict] = {
    "format": {
        "in": "query",
        "name": "_format",
        "description": "Response format; only JSON is served (406 otherwise).",
        "schema": {"type": "string", "enum": ["json", "application/json", "application/fhir+json"]},
    },
    "pretty": {"in": "query", "name": "_pretty", "schema": {"type": "string", "enum": ["true", "false"]}},
    "prefer": {
        "in": "header",
        "name": "Prefer",
        "description": "return=representation (default), return=minimal (no body) or return=OperationOutcome; "
        "handling=strict makes unknown search parameters a 400.",
        "schema": {"type": "string"},
        "example": "return=representation",
    },
    "if-match": {
        "in": "header",
        "name": "If-Match",
        "description": 'The version expected, e.g. W/"3" (412 when it is not the current one).',
        "schema": {"type": "string"},
    },
    "if-none-exist": {
        "in": "header",
        "name": "If-None-Exist",
        "description": "Conditional create: search criteria such as identifier=urn:oid:...|123.",
        "schema": {"type": "string"},
    },
    "if-none-match": {
        "in": "header",
        "name": "If-None-Match",
        "description": "304 when the current version's ETag is listed (or *).",
        "schema": {"type": "string"},
    },
    "if-modified-since": {"in": "header", "name": "If-Modified-Since", "schema": {"type": "string"}},
    "range": {
        "in": "header",
        "name": "Range",
        "description": "One byte range (bytes=a-b, bytes=a-, bytes=-n) of the raw content.",
        "schema": {"type": "string"},
    },
    "profile": {
        "in": "query",
        "name": "profile",
        "description": "Canonical URL of a DMP profile this server ships, to validate against as well (400 otherwise).",
        "schema": {"type": "string"},
    },
    "_id": {"in": "query", "name": "_id", "schema": {"type": "string"}},
    "url": {"in": "query", "name": "url", "description": "Canonical URL, optionally with |version.",
            "schema": {"type": "string"}},
    "_lastUpdated": {
        "in": "query",
        "name": "_lastUpdated",
        "description": "A FHIR date with an optional prefix (eq, ne, gt, lt, ge, le, sa, eb, ap).",
        "schema": {"type": "string"},
    },
    "_count": {"in": "query", "name": "_count", "schema": {"type": "integer", "minimum": 0}},
    "_sort": {"in": "query", "name": "_sort", "schema": {"type": "string"}},
    "_include": {"in": "query", "name": "_include", "schema": {"type": "string"}},
    "_revinclude": {"in": "query", "name": "_revinclude", "schema": {"type": "string"}},
    "_summary": {
        "in": "query",
        "name": "_summary",
        "schema": {"type": "string", "enum": ["true", "false", "text", "data", "count"]},
    },
    "_elements": {"in": "query", "name": "_elements", "schema": {"type": "string"}},
    "_total": {"in": "query", "name": "_total", "schema": {"type": "string", "enum": ["none", "estimate", "accurate"]}},
    "_cursor": {
        "in": "query",
        "name": "_cursor",
        "description": "Opaque paging cursor from a Bundle link.",
        "schema": {"type": "string"},
    },
    "_type": {
        "in": "query",
        "name": "_type",
        "description": "Comma-separated resource types.",
        "schema": {"type": "string"},
    },
    "_since": {"in": "query", "name": "_since", "schema": {"type": "string"}},
    "_at": {"in": "query", "name": "_at", "schema": {"type": "string"}},
}


def params(*names: str) -> list[str]:
    """References to parameter components (apispec turns the names into $refs)."""
    return list(names)


COMMON = ("format", "pretty")
SEARCH = ("_id", "_lastUpdated", "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor")
CONDITIONAL = ("_id", "_lastUpdated")


def path_param(name: str, schema: dict, description: str = "") -> dict:
    out = {"in": "path", "name": name, "required": True, "schema": schema}
    if description:
        out["description"] = description
    return out


RT = path_param("rt", {"type": "string", "enum": TYPES}, "Resource type (see the CapabilityStatement).")
RID = path_param("rid", {"type": "string", "pattern": ID_PATTERN}, "Logical id.")
VID = path_param("vid", {"type": "string", "pattern": "^[0-9]+$"}, "Version id.")
COMPARTMENT_TYPE = path_param(
    "compartment_type", {"type": "string", "enum": [*TYPES, "*"]}, "A resource type, or * for every type."
)

# ------------------------------------------------------------------ helpers for the views


def errors(*statuses: int) -> dict:
    """Error responses; 401, 403, 406 and 500 can come from any FHIR interaction."""
    codes = sorted(set(statuses) | {401, 403, 406, 500})
    return {str(code): _ref("responses", ERRORS[code][0]) for code in codes}


def fhir_ok(description: str, schema: str = "Resource", headers: tuple[str, ...] = ()) -> dict:
    response: dict = {"description": description, "content": {FHIR_JSON: {"schema": _schema(schema)}}}
    if headers:
        response["headers"] = {name: _ref("headers", name) for name in headers}
    return response


def no_content(description: str, headers: tuple[str, ...] = ()) -> dict:
    response: dict = {"description": description}
    if headers:
        response["headers"] = {name: _ref("headers", name) for name in headers}
    return response


def json_body(schema: str = "Resource", *, raw: bool = False, description: str = "") -> dict:
    content = {
        FHIR_JSON: {"schema": _schema(schema)},
        "application/json": {"schema": _schema(schema)},
    }
    if raw:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    body = {"required": True, "content": content}
    if description:
        body["description"] = description
    return body


PATCH_BODY = {"required": True, "content": {"application/json-patch+json": {"schema": _schema("JsonPatch")}}}
FORM_BODY = {"content": {"application/x-www-form-urlencoded": {"schema": _schema("SearchForm")}}}
RAW_BODY_NOTE = "FHIR JSON; for Binary, any other media type is stored as the raw content (415 for other types)."


def operation(summary: str, responses: dict, parameters=(), body: dict | None = None, public: bool = False) -> dict:
    """Keyword arguments for flask-smorest's `Blueprint.doc`. A public operation needs no token: no 401/403."""
    if public:
        responses = {code: r for code, r in responses.items() if code not in ("401", "403")}
    doc: dict = {"summary": summary, "responses": responses, "parameters": list(parameters)}
    if body is not None:
        doc["requestBody"] = body
    if public:
        doc["security"] = []
    return doc


# ------------------------------------------------------------------ wiring
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "SMART on FHIR access token (SMART App Launch 2.x or Backend Services) from this server's "
    "authorization server; discovery at {base}/.well-known/smart-configuration.",
}


def spec_options(auth_required: bool) -> dict:
    """API_SPEC_OPTIONS for flask-smorest: the bearer scheme only when the server requires tokens."""
    options: dict = {
        "info": {
            "description": "FHIR R4 REST API of the DMP server (JSON only). Search parameters and interactions "
            "per type are in the CapabilityStatement at /metadata. The SMART authorization endpoints are "
            "described by /.well-known/smart-configuration, not here."
        }
    }
    if auth_required:
        options["components"] = {"securitySchemes": {"smart": SECURITY_SCHEME}}
        options["security"] = [{"smart": []}]
    return options


def register_components(spec) -> None:
    """Our components, and none of flask-smorest's defaults (their Error schema is not what we answer)."""
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    for name, response in RESPONSES.items():
        spec.components.response(name, response)
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], {k: v for k, v in parameter.items() if k != "in"})
    for name in ("Error", "PaginationMetadata"):
        spec.components.schemas.pop(name, None)


def register_conformance_paths(spec, base_path: str) -> None:
    """GET {base}/{Type} and {base}/{Type}/{id} for the conformance resources the server ships.

    The generic routes serve them (fhir_server/interactions/conformance.py), publicly and from files;
    they are described as their own paths because they answer differently from stored types: public,
    searched by url or _id only, never written.
    """
    from werkzeug.routing import Map, Rule

    from fhir_server.interactions.conformance import CONFORMANCE_TYPES

    base = base_path.rstrip("/")
    for rt in CONFORMANCE_TYPES:
        search_rule, read_rule = Rule(f"{base}/{rt}", defaults={}), Rule(f"{base}/{rt}/<rid>", defaults={})
        Map([search_rule, read_rule])  # binds the rules, as flask-smorest's path helper needs
        search = operation(
            f"search the {rt} resources this server ships (by url or _id; other parameters are a 400)",
            {"200": fhir_ok("searchset Bundle.", "Bundle"), **errors(400)},
            params(*COMMON, "url", "_id", "_count", "_summary"),
            public=True,
        )
        read = operation(
            f"read a {rt} this server ships",
            {"200": fhir_ok(f"The {rt}."), **errors(404)},
            params(*COMMON),
            public=True,
        )
        for doc in (search, read):
            doc["tags"] = ["conformance"]
        spec.path(rule=search_rule, operations={"get": search})
        spec.path(rule=read_rule, operations={"get": read}, parameters=[RID])
