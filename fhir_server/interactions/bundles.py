"""batch and transaction Bundles posted to the base URL.

A transaction is prepared entirely in memory (ids assigned, conditional entries resolved,
`urn:uuid:` references rewritten, every resource validated) and only then written, through
`Repository.commit`, all or nothing.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fhir_server.fhir import documents, pdsm
from fhir_server.fhir.bundle import new_bundle
from fhir_server.fhir.errors import FhirError, Issue, bad_request, not_found, operation_outcome, precondition_failed
from fhir_server.fhir.validation import check_resource_shape, issues_for, structural_issues
from fhir_server.interactions.context import RequestContext, Result
from fhir_server.interactions.resources import (
    ResourceInteractions,
    apply_json_patch,
    check_id,
    parse_etag,
    require_type,
)
from fhir_server.interactions.search import SearchInteractions
from fhir_server.storage.repository import Repository, Version, WriteOp

STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
STRING_FIELDS = ("ifMatch", "ifNoneMatch", "ifNoneExist", "ifModifiedSince")
METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def _status_line(status: int) -> str:
    return STATUS_TEXT.get(status, str(status))


def _split_url(url: str, base_url: str) -> tuple[str, str]:
    """Entry URL relative to the base: ('Patient/1', 'name=x')."""
    if url.startswith(base_url):
        url = url[len(base_url) :]
    parts = urlsplit(url)
    return parts.path.strip("/"), parts.query


class BundleInteractions:
    def __init__(
        self,
        repository: Repository,
        resources: ResourceInteractions,
        searches: SearchInteractions,
    ):
        self.repository = repository
        self.resources = resources
        self.searches = searches

    def process(self, ctx: RequestContext, bundle: Any) -> Result:
        check_resource_shape(bundle, "Bundle")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            raise bad_request("Only batch and transaction Bundles can be posted to the base URL.", ["Bundle.type"])
        envelope = {k: v for k, v in bundle.items() if k != "entry"}
        issues = structural_issues(envelope)
        if issues:
            raise FhirError(400, issues[0].diagnostics, issues=issues)
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise bad_request("Bundle.entry must be an array.", ["Bundle.entry"])
        for i, entry in enumerate(entries):
            request = entry.get("request") if isinstance(entry, dict) else None
            method, url = (request.get("method"), request.get("url")) if isinstance(request, dict) else (None, None)
            if not isinstance(method, str) or method not in METHOD_ORDER or not isinstance(url, str) or not url:
                raise bad_request(
                    f"Bundle.entry[{i}].request must have a method (GET, POST, PUT, PATCH, DELETE) and a url.",
                    [f"Bundle.entry[{i}].request"],
                )
            # the other strings of an entry are used as strings (URL keys, search criteria, ETags)
            texts = [("fullUrl", entry.get("fullUrl"))] + [(f"request.{k}", request.get(k)) for k in STRING_FIELDS]
            for name, value in texts:
                if value is not None and not isinstance(value, str):
                    raise bad_request(f"Bundle.entry[{i}].{name} must be a string.", [f"Bundle.entry[{i}].{name}"])
        if kind == "batch":
            return self._batch(ctx, entries)
        return self._transaction(ctx, entries)

    # ---------------------------------------------------------------- batch
    def _batch(self, ctx: RequestContext, entries: list[dict]) -> Result:
        response = new_bundle("batch-response")
        out = []
        for entry in entries:
            try:
                result = self.dispatch(ctx, entry)
                out.append(self._response_entry(ctx, result))
            except FhirError as err:
                out.append({"response": {"status": str(err.status), "outcome": err.outcome()}})
        response["entry"] = out
        return Result(200, response)

    def dispatch(self, ctx: RequestContext, entry: dict) -> Result:
        """One entry as the equivalent single HTTP interaction."""
        request = entry["request"]
        method = request["method"]
        path, query = _split_url(request["url"], ctx.base_url)
        segments = [s for s in path.split("/") if s]
        resource = entry.get("resource")
        if method == "GET":
            if len(segments) == 1:
                return self.searches.search(ctx, segments[0], parse_qsl(query, keep_blank_values=True), path)
            if len(segments) == 2:
                return self.resources.read(ctx, segments[0], segments[1])
            if len(segments) == 4 and segments[2] == "_history":
                return self.resources.vread(ctx, segments[0], segments[1], segments[3])
            if len(segments) in (2, 3) and segments[-1] == "_history":
                rid = segments[1] if len(segments) == 3 else None
                return self.searches.history(ctx, segments[0], rid, parse_qsl(query), path)
            raise bad_request(f"Unsupported GET url '{request['url']}' in a batch.")
        if method == "POST" and len(segments) == 1:
            return self.resources.create(ctx, segments[0], resource, request.get("ifNoneExist"))
        if method == "PUT" and len(segments) == 2:
            return self.resources.update(ctx, segments[0], segments[1], resource, request.get("ifMatch"))
        if method == "PUT" and len(segments) == 1 and query:
            return self.resources.conditional_update(ctx, segments[0], query, resource, request.get("ifMatch"))
        if method == "DELETE" and len(segments) == 2:
            return self.resources.delete(ctx, segments[0], segments[1], request.get("ifMatch"))
        if method == "DELETE" and len(segments) == 1 and query:
            return self.resources.conditional_delete(ctx, segments[0], query)
        if method == "PATCH" and len(segments) == 2:
            return self.resources.patch(ctx, segments[0], segments[1], _patch_body(resource), request.get("ifMatch"))
        if method == "PATCH" and len(segments) == 1 and query:
            return self.resources.conditional_patch(ctx, segments[0], query, _patch_body(resource), request.get("ifMatch"))
        raise bad_request(f"Unsupported {method} url '{request['url']}'.")

    def _response_entry(self, ctx: RequestContext, result: Result) -> dict:
        response: dict = {"status": _status_line(result.status)}
        if result.location:
            response["location"] = result.location
        if "ETag" in result.headers:
            response["etag"] = result.headers["ETag"]
        entry: dict = {"response": response}
        if result.resource is not None and ctx.prefer_return != "minimal":
            if result.resource.get("resourceType") == "OperationOutcome" and result.status >= 400:
                response["outcome"] = result.resource
            else:
                entry["resource"] = result.resource
                if result.resource.get("id"):
                    entry["fullUrl"] = f"{ctx.base_url}/{result.resource['resourceType']}/{result.resource['id']}"
        return entry

    # ---------------------------------------------------------------- transaction
    def _transaction(self, ctx: RequestContext, entries: list[dict]) -> Result:
        plans: list[dict] = []
        id_map: dict[str, str] = {}  # fullUrl (urn:uuid or absolute) -> "Type/id"
        seen_full_urls: set[str] = set()
        # 1. resolve targets: ids for creates, conditional matches
        for i, entry in enumerate(entries):
            request = entry["request"]
            method = request["method"]
            path, query = _split_url(request["url"], ctx.base_url)
            segments = [s for s in path.split("/") if s]
            full = entry.get("fullUrl")
            if full:
                if full in seen_full_urls:
                    raise bad_request(f"Bundle.entry[{i}].fullUrl '{full}' is used twice.", [f"Bundle.entry[{i}].fullUrl"])
                seen_full_urls.add(full)
            plan: dict = {"index": i, "method": method, "segments": segments, "query": query, "entry": entry}
            if method in ("POST", "PUT", "PATCH", "DELETE") and not segments:
                raise bad_request(f"Bundle.entry[{i}].request.url is empty.", [f"Bundle.entry[{i}].request.url"])
            rt = segments[0] if segments else None
            if method == "POST":
                require_type(rt, "create")
                plan["rt"] = rt
                match = None
                if request.get("ifNoneExist"):
                    found = self.resources.match(ctx, rt, request["ifNoneExist"], "ifNoneExist")
                    if len(found) > 1:
                        raise precondition_failed(f"Bundle.entry[{i}]: ifNoneExist matches {len(found)} resources.")
                    match = found[0] if found else None
                if match:
                    plan.update(rid=match.rid, noop=match)
                else:
                    plan["rid"] = uuid.uuid4().hex
                if full:
                    id_map[full] = f"{rt}/{plan['rid']}"
            elif method in ("PUT", "PATCH", "DELETE"):
                require_type(rt, {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method])
                plan["rt"] = rt
                if len(segments) == 2:
                    check_id(segments[1])
                    plan["rid"] = segments[1]
                elif query:
                    found = self.resources.match(ctx, rt, query, f"conditional {method}")
                    if len(found) > 1:
                        raise precondition_failed(f"Bundle.entry[{i}]: the condition matches {len(found)} resources.")
                    if found:
                        plan["rid"] = found[0].rid
                    elif method == "PUT":
                        resource = entry.get("resource")
                        client_id = resource.get("id") if isinstance(resource, dict) else None
                        if client_id is not None:
                            check_id(client_id)
                        plan["rid"] = client_id or uuid.uuid4().hex
                        plan["create"] = True
                    elif method == "DELETE":
                        plan["noop_delete"] = True
                    else:
                        raise not_found(f"Bundle.entry[{i}]: no {rt} matches '{query}'.")
                else:
                    raise bad_request(f"Bundle.entry[{i}].request.url '{request['url']}' is not supported.")
                if full and "rid" in plan:
                    id_map[full] = f"{rt}/{plan['rid']}"
            plans.append(plan)
        # 2. rewrite references, build resources, validate everything
        provide_bundle = pdsm.is_provide_bundle(entries)  # ITI-65: PDSm Comprehensive rules on top
        issues: list[Issue] = pdsm.provide_bundle_issues(entries) if provide_bundle else []
        ops: list[WriteOp] = []
        touched: set[str] = set()
        replacements: list[tuple[int, str, dict]] = []
        new_documents: list[tuple[dict, str]] = []  # their masterIdentifiers are checked in one query
        masking_wishes: dict[str, bool] = {}  # per patient: every entry sees the state before the transaction
        for plan in plans:
            i, method, entry = plan["index"], plan["method"], plan["entry"]
            if method == "GET" or plan.get("noop") or plan.get("noop_delete"):
                continue
            key = f"{plan['rt']}/{plan['rid']}"
            if key in touched:
                raise bad_request(f"Bundle.entry[{i}]: {key} is written twice in this transaction.")
            touched.add(key)
            expected = parse_etag(entry["request"].get("ifMatch"))
            current_doc = self.repository.current_doc(plan["rt"], plan["rid"], with_index=True)
            if current_doc is not None and current_doc["state"] != "live":
                current_doc = None
            if current_doc is not None and not ctx.access.visible(current_doc):
                raise not_found(f"Bundle.entry[{i}]: {key} is not known.")
            if method == "DELETE":
                if current_doc is None:
                    raise not_found(f"Bundle.entry[{i}]: {key} is not known.")
                ctx.access.check_write("delete", plan["rt"], None, current_doc)
                ops.append(WriteOp(plan["rt"], plan["rid"], None, "DELETE", expected))
                continue
            if method == "PATCH":
                if current_doc is None:
                    raise not_found(f"Bundle.entry[{i}]: {key} is not known.")
                current = self.repository.read(plan["rt"], plan["rid"])
                resource = apply_json_patch(current.resource, _patch_body(entry.get("resource")))
                expected = expected or current.vid
            else:
                resource = entry.get("resource")
                try:
                    check_resource_shape(resource, plan["rt"])
                except FhirError as err:
                    for issue in err.issues:
                        issue.expression = [f"Bundle.entry[{i}].resource"]
                        issue.diagnostics = f"Bundle.entry[{i}]: {issue.diagnostics}"
                    raise
                resource = _rewrite(resource, id_map)
                if method == "PUT" and len(plan["segments"]) == 2 and resource.get("id") != plan["rid"]:
                    raise bad_request(
                        f"Bundle.entry[{i}]: resource id '{resource.get('id')}' does not match the url id.",
                        [f"Bundle.entry[{i}].resource.id"],
                    )
            resource = dict(resource)
            resource["id"] = plan["rid"]
            for issue in issues_for(resource, _provide_bundle_profiles(resource, method) if provide_bundle else ()):
                issue.expression = [f"Bundle.entry[{i}].resource" + e[len(plan['rt']):] for e in issue.expression]
                issue.diagnostics = f"Bundle.entry[{i}] ({plan['rt']}): {issue.diagnostics}"
                issues.append(issue)
            interaction = {"POST": "create", "PUT": "update", "PATCH": "patch"}[method]
            if not issues:
                ctx.access.check_write(interaction, plan["rt"], resource, current_doc)
                resource = self.resources.before_write(ctx, plan["rt"], plan["rid"], resource, current_doc)
                if interaction == "create":
                    resource = ctx.access.apply_patient_defaults(plan["rt"], resource, masking_wishes)
                if interaction == "create" and plan["rt"] == "DocumentReference":
                    resource = documents.with_patient_producer(resource)
                    new_documents.append((resource, plan["rid"]))
                    for old_id, superseded in documents.replaced_targets(self.repository, resource):
                        replacements.append((i, old_id, superseded))
            ops.append(WriteOp(plan["rt"], plan["rid"], resource, method, 0 if method == "POST" else expected))
            plan["op"] = ops[-1]
        if issues:
            raise FhirError(422, issues[0].diagnostics, issues=issues)
        documents.check_resubmissions(self.repository, new_documents)
        for i, old_id, superseded in replacements:
            key = f"DocumentReference/{old_id}"
            if key in touched:
                continue  # the bundle changes the replaced document itself (MHD's PATCH entry form)
            doc = self.repository.current_doc("DocumentReference", old_id, with_index=True)
            if not ctx.access.visible(doc):
                raise not_found(f"Bundle.entry[{i}]: {key} is not known.")
            ctx.access.check_write("update", "DocumentReference", superseded, doc)
            touched.add(key)
            ops.append(WriteOp("DocumentReference", old_id, superseded, "PUT", doc["vid"]))
        # 3. write all or nothing
        self.repository.commit(ops)
        # 4. reads, then the response in request order
        response = new_bundle("transaction-response")
        out = []
        for plan in plans:
            out.append(self._transaction_response(ctx, plan))
        response["entry"] = out
        return Result(200, response)

    def _transaction_response(self, ctx: RequestContext, plan: dict) -> dict:
        method = plan["method"]
        if method == "GET":
            try:
                return self._response_entry(ctx, self.dispatch(ctx, plan["entry"]))
            except FhirError as err:
                return {"response": {"status": str(err.status), "outcome": err.outcome()}}
        if plan.get("noop"):
            return self._response_entry(ctx, self.resources.written(ctx, plan["noop"], 200))
        if plan.get("noop_delete"):
            return {"response": {"status": "204 No Content"}}
        op: WriteOp | None = plan.get("op")
        if method == "DELETE" or op is None:
            return {"response": {"status": "204 No Content"}}
        status = 201 if op.created else 200
        return self._response_entry(ctx, self.resources.written(ctx, op.version, status))


def _provide_bundle_profiles(resource: dict, method: str) -> tuple[str, ...]:
    """What ITI-65 requires of a new entry beyond its type's DMP profile."""
    if method != "POST":
        return ()
    if resource.get("resourceType") == "DocumentReference":
        return (pdsm.COMPREHENSIVE_DOCUMENT,)
    return (pdsm.SUBMISSION_SET,) if pdsm.is_submission_set(resource) else ()


def _rewrite(value, id_map: dict[str, str]):
    """Replace every string equal to a Bundle fullUrl by the resource's server reference."""
    if isinstance(value, dict):
        return {k: _rewrite(v, id_map) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, id_map) for v in value]
    if isinstance(value, str) and value in id_map:
        return id_map[value]
    return value


def _patch_body(resource) -> list:
    """A PATCH entry's body: a Binary holding a JSON Patch (the FHIR batch convention)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            return orjson.loads(base64.b64decode(resource.get("data") or ""))
        except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
            raise bad_request("The PATCH entry's Binary does not hold a JSON Patch document.") from None
    if isinstance(resource, list):
        return resource
    raise bad_request("A PATCH entry must carry a Binary with contentType application/json-patch+json.")


__all__ = ["BundleInteractions", "operation_outcome"]
