"""The FHIR REST API under /fhir: HTTP -> interaction -> HTTP. No business rules here."""

from __future__ import annotations

from flask import Response, current_app, g, request
from flask_smorest import Blueprint

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


@blp.before_request
def _negotiate():
    # Binary reads may return raw bytes: negotiation is decided in the view for them.
    if request.view_args and request.view_args.get("rt") == "Binary" and request.method == "GET":
        return None
    wants_json(request)
    return None


@blp.route("/metadata", methods=["GET", "OPTIONS"])
def metadata():
    """CapabilityStatement (public, with CORS for browser apps)."""
    from fhir_server.capability import capability_statement

    if request.method == "OPTIONS":
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
    else:
        response = respond(Result(200, capability_statement(base_url(), current_app.config["DMP_SETTINGS"])))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@blp.route("", methods=["POST"], strict_slashes=False)
def batch_or_transaction():
    """batch / transaction Bundle."""
    bundle = request_json(request)
    g.dmp_request_bundle = bundle if isinstance(bundle, dict) else None
    return respond(services().bundles.process(context(), bundle))


@blp.route("/_history", methods=["GET"])
def history_system():
    return respond(services().searches.history(context(), None, None, query_params(), "_history"))


@blp.route("/_search", methods=["GET", "POST"])
def search_system_post():
    return respond(services().searches.search(context(), None, search_params(), "_search"))


@blp.route("/<rt>", methods=["GET"])
def search_type(rt: str):
    return respond(services().searches.search(context(), rt, search_params(), rt))


@blp.route("/<rt>/_search", methods=["POST", "GET"])
def search_type_post(rt: str):
    return respond(services().searches.search(context(), rt, search_params(), rt))


@blp.route("/<rt>", methods=["POST"])
def create(rt: str):
    body = _write_body(rt)
    return respond(services().resources.create(context(), rt, body, request.headers.get("If-None-Exist")))


@blp.route("/<rt>", methods=["PUT"])
def conditional_update(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("PUT on a type needs search criteria (conditional update) or an id in the URL.")
    return respond(
        services().resources.conditional_update(context(), rt, query, _write_body(rt), request.headers.get("If-Match"))
    )


@blp.route("/<rt>", methods=["PATCH"])
def conditional_patch(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("PATCH on a type needs search criteria (conditional patch) or an id in the URL.")
    return respond(
        services().resources.conditional_patch(
            context(), rt, query, request_patch(request), request.headers.get("If-Match")
        )
    )


@blp.route("/<rt>", methods=["DELETE"])
def conditional_delete(rt: str):
    query = request.query_string.decode()
    if not query:
        raise bad_request("DELETE on a type needs search criteria (conditional delete) or an id in the URL.")
    return respond(services().resources.conditional_delete(context(), rt, query))


@blp.route("/<rt>/$validate", methods=["POST"])
def validate(rt: str):
    """$validate (resource or Parameters with resource and mode)."""
    ctx = context()  # authenticated like every other interaction
    return respond(services().resources.validate(ctx, rt, request_json(request)))


@blp.route("/<rt>/_history", methods=["GET"])
def history_type(rt: str):
    return respond(services().searches.history(context(), rt, None, query_params(), f"{rt}/_history"))


@blp.route("/<rt>/<rid>", methods=["GET"])
def read(rt: str, rid: str):
    ctx = context()
    if rt == "Binary" and wants_raw_binary(request):
        return respond(services().resources.binary_content(ctx, rid, request.headers.get("Range")))
    if rt == "Binary":
        wants_json(request)
    return respond(services().resources.read(ctx, rt, rid))


@blp.route("/<rt>/<rid>", methods=["PUT"])
def update(rt: str, rid: str):
    body = _write_body(rt)
    if rt == "Binary" and request.mimetype not in JSON_TYPES:
        body["id"] = rid
    return respond(services().resources.update(context(), rt, rid, body, request.headers.get("If-Match")))


@blp.route("/<rt>/<rid>", methods=["PATCH"])
def patch(rt: str, rid: str):
    return respond(
        services().resources.patch(context(), rt, rid, request_patch(request), request.headers.get("If-Match"))
    )


@blp.route("/<rt>/<rid>", methods=["DELETE"])
def delete(rt: str, rid: str):
    return respond(services().resources.delete(context(), rt, rid, request.headers.get("If-Match")))


@blp.route("/<rt>/<rid>/_history", methods=["GET"])
def history_instance(rt: str, rid: str):
    return respond(services().searches.history(context(), rt, rid, query_params(), f"{rt}/{rid}/_history"))


@blp.route("/<rt>/<rid>/_history/<vid>", methods=["GET"])
def vread(rt: str, rid: str, vid: str):
    return respond(services().resources.vread(context(), rt, rid, vid))


@blp.route("/Patient/<rid>/$everything", methods=["GET"])
def patient_everything(rid: str):
    """Patient $everything."""
    return respond(services().searches.everything(context(), rid, query_params()))


@blp.route("/Patient/<rid>/<compartment_type>", methods=["GET"])
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
