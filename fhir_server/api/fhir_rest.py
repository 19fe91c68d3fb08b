"""The FHIR REST API under /fhir: HTTP -> interaction -> HTTP. No business rules here."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask_smorest import Blueprint

from fhir_server.api import openapi as oa
from fhir_server.api.negotiation import (
    JSON_TYPES,
    binary_from_raw,
    fhir_response,
    request_json,
    request_patch,
    wants_json,
    wants_raw_binary,
)
from fhir_server.auth import current_principal
from fhir_server.policy import operator_principal
from fhir_server.fhir.errors import FhirError, bad_request
from fhir_server.interactions import conformance
from fhir_server.interactions.context import RequestContext, Result

blp = Blueprint("fhir", __name__, description="FHIR R4 REST API (JSON)")

OPEN_MODE_PRINCIPAL = operator_principal("open-mode")


def services():
    return current_app.extensions["dmp"]


def base_url() -> str:
    configured = current_app.config["DMP_SETTINGS"].public_base_url
    if configured:
        return configured.rstrip("/")
    return request.host_url.rstrip("/") + current_app.config["DMP_SETTINGS"].base_path


def context() -> RequestContext:
    prefer = {}
    for part in request.headers.get("Prefer", "").split(";"):
        for item in part.split(","):
            if "=" in item:
                key, value = item.split("=", 1)
                prefer[key.strip().lower()] = value.strip().strip('"')
    ret = prefer.get("return", "representation")
    if ret not in ("minimal", "representation", "OperationOutcome"):
        ret = "representation"
    handling = prefer.get("handling", "lenient")
    return RequestContext(
        base_url=base_url(),
        prefer_return=ret,
        prefer_handling="strict" if handling == "strict" else "lenient",
        headers={k.lower(): v for k, v in request.headers.items()},
        access=_access(),
    )


def _access():
    access = services().policy.for_principal(caller())
    g.dmp_access = access  # the audit hook reports the rules that decided
    return access


def caller():
    """Who is asking: the verified SMART token's principal (401 without one), or the operator in open mode."""
    if not current_app.config["DMP_SETTINGS"].auth_required:
        g.dmp_open_principal = OPEN_MODE_PRINCIPAL
        return OPEN_MODE_PRINCIPAL
    return current_principal()


def respond(result: Result) -> Response:
    g.dmp_result = result  # what the audit hook names in the AuditEvent
    return fhir_response(result, pretty=request.args.get("_pretty") == "true")


def query_params(exclude=("_format", "_pretty")) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.args.items(multi=True) if k not in exclude]


def search_params() -> list[tuple[str, str]]:
    params = query_params()
    if request.method == "POST":
        if request.mimetype != "application/x-www-form-urlencoded":
            raise FhirError(415, "POST _search takes application/x-www-form-urlencoded parameters.", "not-supported")
        params += [(k, v) for k, v in request.form.items(multi=True)]
    return params


PUBLIC_ENDPOINTS = ("fhir.metadata", "fhir.metadata_options")


def _public() -> bool:
    """What describes the server is public: conformance suites read it before they have a token."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return True
    return request.endpoint in ("fhir.read", "fhir.search_type") and (request.view_args or {}).get("rt") in conformance.CONFORMANCE_TYPES


@blp.before_request
def _authenticate_then_negotiate():
    # Who is asking comes first: a caller without a valid token learns nothing else (not even a 400).
    g.dmp_public = _public()  # what describes the server is no access to a record: not audited
    if not g.dmp_public:
        caller()
    # Binary reads may return raw bytes: negotiation is decided in the view for them.
    if request.endpoint == "fhir.read_binary":
        return None
    wants_json(request)
    return None


def _no_automatic_options(view):
    """Flask answers OPTIONS itself unless told not to (flask-smorest's route drops the keyword)."""
    view.provide_automatic_options = False
    return view


@blp.route("/metadata", methods=["GET"])
@_no_automatic_options  # OPTIONS is metadata_options: the CORS preflight
@blp.doc(
    **oa.operation(
        "CapabilityStatement (public)",
        {"200": oa.fhir_ok("What this server supports.", "CapabilityStatement"),
         **oa.errors(406)},
        oa.params(*oa.COMMON),
        public=True,
    )
)
def metadata():
    """CapabilityStatement (public, with CORS for browser apps)."""
    from fhir_server.capability import capability_statement

    response = respond(Result(200, capability_statement(base_url(), current_app.config["DMP_SETTINGS"])))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@blp.route("/metadata", methods=["OPTIONS"])
@blp.doc(**oa.operation("CORS preflight for the CapabilityStatement", {"204": oa.no_content("CORS headers.")}, public=True))
def metadata_options():
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@blp.route("", methods=["POST"], strict_slashes=False)
@blp.doc(
    **oa.operation(
        "batch or transaction",
        {"200": oa.fhir_ok("batch-response or transaction-response Bundle.", "Bundle"),
         **oa.errors(400, 404, 405, 409, 410, 412, 413, 415, 422)},
        oa.params(*oa.COMMON, "prefer"),
        oa.json_body("BatchOrTransaction", description="A transaction is all or nothing: the first failing "
                     "entry's status is the answer. A batch answers 200 with one response per entry."),
    )
)
def batch_or_transaction():
    """batch / transaction Bundle."""
    bundle = request_json(request)
    g.dmp_request_bundle = bundle if isinstance(bundle, dict) else None
    return respond(services().bundles.process(context(), bundle))


HISTORY_PARAMS = oa.params(*oa.COMMON, "_count", "_since", "_at", "_cursor")
SEARCH_RESPONSES = {"200": oa.fhir_ok("searchset Bundle.", "Bundle"), **oa.errors(400, 404, 405)}


@blp.route("/_history", methods=["GET"])
@blp.doc(**oa.operation("history-system", {"200": oa.fhir_ok("history Bundle.", "Bundle"), **oa.errors(400)},
                        HISTORY_PARAMS))
def history_system():
    return respond(services().searches.history(context(), None, None, query_params(), "_history"))


SYSTEM_SEARCH_PARAMS = oa.params(*oa.COMMON, "prefer", "_type", *oa.SEARCH)
TYPE_SEARCH_PARAMS = oa.params(*oa.COMMON, "prefer", *oa.SEARCH)


@blp.route("/_search", methods=["GET"])
@blp.doc(**oa.operation("search-system (_id and _lastUpdated across types)",
                        {"200": oa.fhir_ok("searchset Bundle.", "Bundle"), **oa.errors(400)}, SYSTEM_SEARCH_PARAMS))
def search_system():
    return respond(services().searches.search(context(), None, search_params(), "_search"))


@blp.route("/_search", methods=["POST"])
@blp.doc(**oa.operation("search-system with form parameters",
                        {"200": oa.fhir_ok("searchset Bundle.", "Bundle"), **oa.errors(400, 413, 415)},
                        SYSTEM_SEARCH_PARAMS, oa.FORM_BODY))
def search_system_post():
    return respond(services().searches.search(context(), None, search_params(), "_search"))


@blp.route("/<rt>", methods=["GET"], parameters=[oa.RT])
@blp.doc(**oa.operation("search-type (parameters of each type in the CapabilityStatement)", SEARCH_RESPONSES,
                        TYPE_SEARCH_PARAMS))
def search_type(rt: str):
    if rt in conformance.CONFORMANCE_TYPES:
        return respond(conformance.search(RequestContext(base_url=base_url()), rt, query_params()))
    return respond(services().searches.search(context(), rt, search_params(), rt))


@blp.route("/<rt>/_search", methods=["GET"], parameters=[oa.RT])
@blp.doc(**oa.operation("search-type", SEARCH_RESPONSES, TYPE_SEARCH_PARAMS))
def search_type_get(rt: str):
    return respond(services().searches.search(context(), rt, search_params(), rt))


@blp.route("/<rt>/_search", methods=["POST"], parameters=[oa.RT])
@blp.doc(**oa.operation("search-type with form parameters", {**SEARCH_RESPONSES, **oa.errors(400, 404, 405, 413, 415)},
                        TYPE_SEARCH_PARAMS, oa.FORM_BODY))
def search_type_post(rt: str):
    return respond(services().searches.search(context(), rt, search_params(), rt))


WRITE_ERRORS = oa.errors(400, 404, 405, 409, 412, 413, 415, 422)
WRITTEN_HEADERS = ("ETag", "Location")


@blp.route("/<rt>", methods=["POST"], parameters=[oa.RT])
@blp.doc(
    **oa.operation(
        "create (conditional with If-None-Exist)",
        {"201": oa.fhir_ok("Created; the body follows Prefer.", headers=WRITTEN_HEADERS),
         "200": oa.fhir_ok("If-None-Exist matched one resource: nothing written.", headers=WRITTEN_HEADERS),
         **WRITE_ERRORS},
        oa.params(*oa.COMMON, "prefer", "if-none-exist"),
        oa.json_body(raw=True, description=oa.RAW_BODY_NOTE),
    )
)
def create(rt: str):
    body = _write_body(rt)
    return respond(services().resources.create(context(), rt, body, request.headers.get("If-None-Exist")))


@blp.route("/<rt>", methods=["PUT"], parameters=[oa.RT])
@blp.doc(
    **oa.operation(
        "conditional update (search criteria in the query; 400 without)",
        {"200": oa.fhir_ok("Updated.", headers=WRITTEN_HEADERS),
         "201": oa.fhir_ok("No match: created.", headers=WRITTEN_HEADERS),
         **WRITE_ERRORS},
        oa.params(*oa.COMMON, *oa.CONDITIONAL, "prefer", "if-match"),
        oa.json_body(raw=True, description=oa.RAW_BODY_NOTE),
    )
)
def conditional_update(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("PUT on a type needs search criteria (conditional update) or an id in the URL.")
    return respond(
        services().resources.conditional_update(context(), rt, query, _write_body(rt), request.headers.get("If-Match"))
    )


@blp.route("/<rt>", methods=["PATCH"], parameters=[oa.RT])
@blp.doc(
    **oa.operation(
        "conditional patch (search criteria in the query; 400 without)",
        {"200": oa.fhir_ok("Patched.", headers=WRITTEN_HEADERS), **WRITE_ERRORS},
        oa.params(*oa.COMMON, *oa.CONDITIONAL, "prefer", "if-match"),
        oa.PATCH_BODY,
    )
)
def conditional_patch(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("PATCH on a type needs search criteria (conditional patch) or an id in the URL.")
    return respond(
        services().resources.conditional_patch(
            context(), rt, query, request_patch(request), request.headers.get("If-Match")
        )
    )


@blp.route("/<rt>", methods=["DELETE"], parameters=[oa.RT])
@blp.doc(
    **oa.operation(
        "conditional delete (search criteria in the query; 400 without; one match at most)",
        {"204": oa.no_content("Deleted, or nothing matched."), **oa.errors(400, 404, 405, 409, 412)},
        oa.params(*oa.COMMON, *oa.CONDITIONAL),
    )
)
def conditional_delete(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("DELETE on a type needs search criteria (conditional delete) or an id in the URL.")
    return respond(services().resources.conditional_delete(context(), rt, query))


@blp.route("/<rt>/$validate", methods=["POST"], parameters=[oa.RT])
@blp.doc(
    **oa.operation(
        "$validate",
        {"200": oa.fhir_ok("The issues found (an information issue when valid).", "OperationOutcome"),
         **oa.errors(400, 404, 413, 415)},
        oa.params(*oa.COMMON, "profile"),
        oa.json_body(description="The resource, or a Parameters with `resource`, `mode` (create, update, delete) "
                     "and `profile`."),
    )
)
def validate(rt: str):
    """$validate (resource or Parameters with resource and mode)."""
    ctx = context()  # authenticated like every other interaction
    return respond(services().resources.validate(ctx, rt, request_json(request), request.args.get("profile")))


@blp.route("/<rt>/_history", methods=["GET"], parameters=[oa.RT])
@blp.doc(**oa.operation("history-type", {"200": oa.fhir_ok("history Bundle.", "Bundle"), **oa.errors(400, 404, 405)},
                        HISTORY_PARAMS))
def history_type(rt: str):
    return respond(services().searches.history(context(), rt, None, query_params(), f"{rt}/_history"))


READ_RESPONSES = {
    "200": oa.fhir_ok("The current version.", headers=("ETag",)),
    "304": oa.no_content("Not modified (If-None-Match / If-Modified-Since).", ("ETag",)),
    **oa.errors(404, 405, 410),
}


@blp.route("/<rt>/<rid>", methods=["GET"], parameters=[oa.RT, oa.RID])
@blp.doc(
    **oa.operation(
        "read (Binary: see /Binary/{rid})",
        READ_RESPONSES,
        [oa.path_param("rt", {"type": "string", "enum": [t for t in oa.TYPES if t != "Binary"]}),
         *oa.params(*oa.COMMON, "if-none-match", "if-modified-since")],
    )
)
def read(rt: str, rid: str):
    if rt in conformance.CONFORMANCE_TYPES:
        return respond(conformance.read(RequestContext(base_url=base_url()), rt, rid))
    return respond(services().resources.read(context(), rt, rid))


@blp.route("/Binary/<rid>", methods=["GET"], parameters=[oa.RID], defaults={"rt": "Binary"})
@blp.doc(
    **oa.operation(
        "read a Binary: the raw content unless the client asks for FHIR JSON (Accept or _format)",
        {
            "200": {
                "description": "The Binary resource (FHIR JSON), or its raw content with its own media type.",
                "content": {oa.FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Resource"}}, "*/*": {}},
                "headers": {"ETag": {"$ref": "#/components/headers/ETag"}},
            },
            "206": {"description": "One byte range of the raw content.", "content": {"*/*": {}}},
            "304": oa.no_content("Not modified (If-None-Match / If-Modified-Since).", ("ETag",)),
            **oa.errors(404, 410, 416),
        },
        oa.params(*oa.COMMON, "if-none-match", "if-modified-since", "range"),
    )
)
def read_binary(rt: str, rid: str):  # rt is always Binary (route default), as the audit expects
    # This static route wins over /<rt>/_history and /<rt>/_search: hand those back.
    if rid == "_history":
        return history_type("Binary")
    if rid == "_search":
        return search_type_get("Binary")
    ctx = context()
    if wants_raw_binary(request):
        return respond(services().resources.binary_content(ctx, rid, request.headers.get("Range")))
    wants_json(request)
    return respond(services().resources.read(ctx, "Binary", rid))


@blp.route("/<rt>/<rid>", methods=["PUT"], parameters=[oa.RT, oa.RID])
@blp.doc(
    **oa.operation(
        "update (or create with a client id)",
        {"200": oa.fhir_ok("Updated.", headers=WRITTEN_HEADERS),
         "201": oa.fhir_ok("Created with this id.", headers=WRITTEN_HEADERS),
         **WRITE_ERRORS},
        oa.params(*oa.COMMON, "prefer", "if-match"),
        oa.json_body(raw=True, description=oa.RAW_BODY_NOTE),
    )
)
def update(rt: str, rid: str):
    body = _write_body(rt)
    if rt == "Binary" and request.mimetype not in JSON_TYPES:
        body["id"] = rid
    return respond(services().resources.update(context(), rt, rid, body, request.headers.get("If-Match")))


@blp.route("/<rt>/<rid>", methods=["PATCH"], parameters=[oa.RT, oa.RID])
@blp.doc(
    **oa.operation(
        "patch (JSON Patch)",
        {"200": oa.fhir_ok("Patched.", headers=WRITTEN_HEADERS), **WRITE_ERRORS},
        oa.params(*oa.COMMON, "prefer", "if-match"),
        oa.PATCH_BODY,
    )
)
def patch(rt: str, rid: str):
    return respond(
        services().resources.patch(context(), rt, rid, request_patch(request), request.headers.get("If-Match"))
    )


@blp.route("/<rt>/<rid>", methods=["DELETE"], parameters=[oa.RT, oa.RID])
@blp.doc(
    **oa.operation(
        "delete",
        {"204": oa.no_content("Deleted (or already absent).", ("ETag",)), **oa.errors(400, 404, 405, 409, 412)},
        oa.params(*oa.COMMON, "if-match"),
    )
)
def delete(rt: str, rid: str):
    return respond(services().resources.delete(context(), rt, rid, request.headers.get("If-Match")))


@blp.route("/<rt>/<rid>/_history", methods=["GET"], parameters=[oa.RT, oa.RID])
@blp.doc(**oa.operation("history-instance",
                        {"200": oa.fhir_ok("history Bundle.", "Bundle"), **oa.errors(400, 404, 405, 410)},
                        HISTORY_PARAMS))
def history_instance(rt: str, rid: str):
    return respond(services().searches.history(context(), rt, rid, query_params(), f"{rt}/{rid}/_history"))


@blp.route("/<rt>/<rid>/_history/<vid>", methods=["GET"], parameters=[oa.RT, oa.RID, oa.VID])
@blp.doc(**oa.operation("vread", {"200": oa.fhir_ok("That version.", headers=("ETag",)), **oa.errors(404, 405, 410)},
                        oa.params(*oa.COMMON)))
def vread(rt: str, rid: str, vid: str):
    return respond(services().resources.vread(context(), rt, rid, vid))


@blp.route("/Patient/<rid>/$everything", methods=["GET"], parameters=[oa.RID])
@blp.doc(
    **oa.operation(
        "Patient $everything: the compartment and what it references, paged",
        {"200": oa.fhir_ok("searchset Bundle.", "Bundle"), **oa.errors(400, 404, 410)},
        oa.params(*oa.COMMON, "_count", "_cursor", "_since", "_type"),
    )
)
def patient_everything(rid: str):
    """Patient $everything."""
    return respond(services().searches.everything(context(), rid, query_params()))


@blp.route("/Patient/<rid>/<compartment_type>", methods=["GET"], parameters=[oa.RID, oa.COMPARTMENT_TYPE])
@blp.doc(**oa.operation("Patient compartment search", {**SEARCH_RESPONSES, **oa.errors(400, 404, 405, 410)},
                        TYPE_SEARCH_PARAMS))
def compartment_search(rid: str, compartment_type: str):
    """Patient compartment search: /Patient/{id}/DocumentReference or /Patient/{id}/*."""
    if compartment_type == "_history":
        return history_instance("Patient", rid)
    services().resources.read(context(), "Patient", rid)  # 404/410 for an unknown patient
    rt = None if compartment_type == "*" else compartment_type
    return respond(
        services().searches.search(
            context(), rt, search_params(), f"Patient/{rid}/{compartment_type}", compartment=f"Patient/{rid}"
        )
    )


def _write_body(rt: str):
    if rt == "Binary" and request.mimetype and request.mimetype not in JSON_TYPES:
        return binary_from_raw(request)
    return request_json(request)
