"""Instance and type interactions: read, vread, create, update, patch, delete (plain and conditional)."""

from __future__ import annotations

import copy
import email.utils
from datetime import datetime

import jsonpatch

from fhir_server.fhir.errors import FhirError, Issue, bad_request, not_found, precondition_failed
from fhir_server.fhir.resource_types import get_resource_type
from fhir_server.fhir.validation import check_resource_shape, validate_resource
from fhir_server.interactions.context import RequestContext, Result
from fhir_server.search.engine import SearchEngine
from fhir_server.storage.repository import Repository, Version, fhir_instant

ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def require_type(name: str, interaction: str):
    rt = get_resource_type(name)
    if rt is None:
        raise FhirError(404, f"Resource type '{name}' is not supported by this server.", "not-supported")
    if not rt.supports(interaction):
        raise FhirError(405, f"{interaction} is not allowed on {name}.", "not-supported")
    return rt


def check_id(rid: str) -> None:
    if not isinstance(rid, str) or not rid or len(rid) > 64 or not set(rid) <= ID_CHARS:
        raise bad_request(f"'{rid}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}}).", ["id"])


def parse_etag(value: str | None) -> int | None:
    """W/"3" -> 3."""
    if not value:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise bad_request(f"'{value}' is not a version ETag such as W/\"3\".", ["If-Match"])
    return int(text)


def http_date(ts: datetime) -> str:
    return email.utils.format_datetime(ts, usegmt=True)


def version_headers(version: Version) -> dict[str, str]:
    return {"ETag": version.etag, "Last-Modified": http_date(version.ts)}


class ResourceInteractions:
    def __init__(self, repository: Repository, search: SearchEngine):
        self.repository = repository
        self.search = search
        # Per-type write hooks (e.g. Subscription): `before_write(ctx, rt, rid, resource, current_doc)`
        # returns the resource to store, after the access checks, for creates, updates and patches.
        self.write_hooks: dict = {}

    def before_write(self, ctx: RequestContext, rt: str, rid: str, resource: dict, current_doc: dict | None) -> dict:
        hook = self.write_hooks.get(rt)
        return hook.before_write(ctx, rt, rid, resource, current_doc) if hook else resource

    # ---------------------------------------------------------------- access
    def visible_doc(self, ctx: RequestContext, rt: str, rid: str, letter: str = "r") -> dict:
        """The current stored document if this caller may see it; 404 as if absent otherwise."""
        doc = self.repository.current_doc(rt, rid, with_index=True)
        if doc is None or doc["state"] == "pending" or not ctx.access.visible(doc, letter):
            raise not_found(f"{rt}/{rid} is not known.")
        return doc

    # ---------------------------------------------------------------- reads
    def _readable_doc(self, ctx: RequestContext, rt: str, rid: str) -> dict | None:
        """The current document for a read, refused (404) when this caller may not see it."""
        require_type(rt, "read")
        ctx.access.require(rt, "read")
        doc = self.repository.current_doc(rt, rid, with_index=True)
        if doc is not None and doc["state"] == "live" and not ctx.access.visible(doc):
            raise not_found(f"{rt}/{rid} is not known.")
        if doc is not None and doc["state"] == "deleted" and ctx.access.kind not in ("system", "operator"):
            raise not_found(f"{rt}/{rid} is not known.")  # a tombstone says nothing about who may know it
        return doc

    def read(self, ctx: RequestContext, rt: str, rid: str) -> Result:
        version = self.repository.current_version(self._readable_doc(ctx, rt, rid), f"{rt}/{rid}")
        headers = version_headers(version)
        if _not_modified(ctx, version):
            return Result(304, None, headers)
        return Result(200, version.resource, headers)

    def vread(self, ctx: RequestContext, rt: str, rid: str, vid: str) -> Result:
        require_type(rt, "vread")
        ctx.access.require(rt, "vread")
        if not vid.isdigit():
            raise not_found(f"{rt}/{rid} has no version '{vid}'.")
        self.visible_doc(ctx, rt, rid)
        version = self.repository.vread(rt, rid, int(vid))
        return Result(200, version.resource, version_headers(version))

    def binary_content(self, ctx: RequestContext, rid: str, range_header: str | None = None) -> Result:
        """ITI-68 Retrieve Document: the raw bytes of a Binary the caller may see, with byte ranges."""
        doc = self._readable_doc(ctx, "Binary", rid)  # the access policy decides here, as for any read
        version = self.repository.current_version(doc, f"Binary/{rid}", content=False)
        headers = version_headers(version)
        if _not_modified(ctx, version):
            return Result(304, None, headers)
        data = self.repository.raw_binary(doc)  # one read of the content, no base64 round trip
        content_type = version.resource.get("contentType") or "application/octet-stream"
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Disposition"] = f'attachment; filename="{rid}{_extension(content_type)}"'
        if not range_header:
            return Result(200, None, headers, raw=data, raw_content_type=content_type)
        byte_range = _parse_range(range_header, len(data))
        if byte_range is None:
            headers["Content-Range"] = f"bytes */{len(data)}"
            raise FhirError(416, f"Range '{range_header}' cannot be satisfied ({len(data)} bytes).", "value", headers=headers)
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Result(206, None, headers, raw=data[start : end + 1], raw_content_type=content_type)

    def validate(self, ctx: RequestContext, rt: str, body, profile: str | None = None) -> Result:
        """$validate: every problem the server would refuse the resource for, with its FHIRPath.
        Accepts the resource itself or a Parameters with `resource`, `mode` (create, update, delete)
        and `profile` (a shipped DMP profile to check against as well; also a query parameter)."""
        from fhir_server.fhir.profiles import structure_definition
        from fhir_server.fhir.validation import issues_for

        require_type(rt, "read")
        mode = "create"
        resource = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            resource = None
            parameters = body.get("parameter", [])
            if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
                raise bad_request("Parameters.parameter must be an array of objects.", ["Parameters.parameter"])
            for param in parameters:
                if param.get("name") == "resource":
                    resource = param.get("resource")
                elif param.get("name") == "mode":
                    mode = param.get("valueCode") or param.get("valueString") or mode
                elif param.get("name") == "profile":
                    profile = param.get("valueUri") or param.get("valueCanonical") or param.get("valueString")
            if mode not in ("create", "update", "delete"):
                raise bad_request(f"$validate mode '{mode}' is not one of create, update, delete.", ["mode"])
        if profile is not None and not isinstance(profile, str):
            raise bad_request("The $validate profile must be a canonical URL (a string).", ["profile"])
        if profile and structure_definition(profile) is None:
            raise bad_request(f"Profile '{profile}' is not one this server ships (see CapabilityStatement supportedProfile).",
                              ["profile"], code="not-supported")
        if mode == "delete":
            issues = []
        else:
            check_resource_shape(resource, rt)
            issues = issues_for(resource, (profile,) if profile else ())
            if mode == "update" and not resource.get("id"):
                issues.append(Issue("An update needs the resource id.", "required", "error", [f"{rt}.id"]))
        if not issues:
            issues = [Issue("The resource is valid for this server (R4 and the DMP profile).", "informational", "information")]
        return Result(200, {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]})

    # ---------------------------------------------------------------- writes
    def create(self, ctx: RequestContext, rt: str, resource, if_none_exist: str | None = None) -> Result:
        require_type(rt, "create")
        ctx.access.require(rt, "create")  # who may, before what: a refused caller learns nothing from validation
        check_resource_shape(resource, rt)
        if if_none_exist:
            existing = self.match(ctx, rt, if_none_exist, "If-None-Exist")
            if len(existing) > 1:
                raise precondition_failed(f"If-None-Exist '{if_none_exist}' matches {len(existing)} resources.")
            if existing:
                return self.written(ctx, existing[0], 200)
        resource = dict(resource)
        resource.pop("id", None)  # the server assigns ids on create
        validate_resource(resource)
        ctx.access.check_write("create", rt, resource, None)
        resource = ctx.access.apply_patient_defaults(rt, resource)
        if rt == "DocumentReference":
            return self._create_document(ctx, resource)
        rid = self.repository.ids()
        resource = self.before_write(ctx, rt, rid, resource, None)
        version = self.repository.create(resource, rid)
        return self.written(ctx, version, 201)

    def _create_document(self, ctx: RequestContext, document: dict) -> Result:
        """MHD ITI-105 / PDSm: inline content becomes a Binary, resubmissions are refused, and a
        replacement supersedes the replaced document in the same atomic write."""
        from fhir_server.fhir import documents
        from fhir_server.fhir.pdsm import sha1_base64
        from fhir_server.storage.repository import WriteOp, new_id

        document = documents.with_patient_producer(copy.deepcopy(document))
        documents.check_resubmission(self.repository, document, None)
        replaced = documents.replaced_targets(self.repository, document)
        ops: list[WriteOp] = []
        for i, attachment in documents.inline_attachments(document):
            where = f"DocumentReference.content[{i}].attachment.data"
            data = documents.decode(attachment["data"], where)
            if documents.is_patient_upload(document):
                documents.check_patient_upload(attachment.get("contentType"), data, where)
            binary = {"resourceType": "Binary", "contentType": attachment.get("contentType") or "application/octet-stream",
                      "data": attachment.pop("data")}
            binary_id = new_id()
            attachment["url"] = f"Binary/{binary_id}"
            documents.check_declared_size_and_hash(attachment, data, f"DocumentReference.content[{i}].attachment")
            attachment.setdefault("size", len(data))
            attachment.setdefault("hash", sha1_base64(data))
            ctx.access.check_write("create", "Binary", binary, None)
            ops.append(WriteOp("Binary", binary_id, binary, "POST", 0))
        for rid, superseded in replaced:
            doc = self.visible_doc(ctx, "DocumentReference", rid)
            ctx.access.check_write("update", "DocumentReference", superseded, doc)
            ops.append(WriteOp("DocumentReference", rid, superseded, "PUT", doc["vid"]))
        if not ops:
            return self.written(ctx, self.repository.create(document), 201)
        rid = new_id()
        ops.insert(0, WriteOp("DocumentReference", rid, {**document, "id": rid}, "POST", 0))
        versions = self.repository.commit(ops)
        return self.written(ctx, versions[0], 201)

    def update(self, ctx: RequestContext, rt: str, rid: str, resource, if_match: str | None) -> Result:
        require_type(rt, "update")
        ctx.access.require(rt, "update")
        check_id(rid)
        check_resource_shape(resource, rt)
        if resource.get("id") != rid:
            raise bad_request(
                f"The resource id '{resource.get('id')}' does not match the URL id '{rid}'.", [f"{rt}.id"]
            )
        validate_resource(resource)
        current = self.repository.current_doc(rt, rid, with_index=True)
        existing = current if current is not None and current["state"] == "live" else None
        ctx.access.check_write("update", rt, resource, existing)
        resource = self.before_write(ctx, rt, rid, resource, existing)
        version, created = self.repository.update(rt, rid, resource, parse_etag(if_match))
        return self.written(ctx, version, 201 if created else 200)

    def conditional_update(self, ctx: RequestContext, rt: str, query: str, resource, if_match: str | None) -> Result:
        require_type(rt, "update")
        check_resource_shape(resource, rt)
        matches = self.match(ctx, rt, query, "conditional update")
        if len(matches) > 1:
            raise precondition_failed(f"The conditional update matches {len(matches)} resources.")
        if matches:
            rid = matches[0].rid
            if resource.get("id") not in (None, rid):
                raise bad_request(f"The resource id '{resource['id']}' differs from the matched {rt}/{rid}.", [f"{rt}.id"])
            return self.update(ctx, rt, rid, {**resource, "id": rid}, if_match)
        if resource.get("id"):
            return self.update(ctx, rt, resource["id"], resource, if_match)
        return self.create(ctx, rt, resource)

    def patch(self, ctx: RequestContext, rt: str, rid: str, operations, if_match: str | None) -> Result:
        require_type(rt, "patch")
        ctx.access.require(rt, "patch")
        doc = self.visible_doc(ctx, rt, rid)
        current = self.repository.read(rt, rid)
        patched = apply_json_patch(current.resource, operations)
        if patched.get("resourceType") != rt or patched.get("id") != rid:
            raise FhirError(422, "A patch may not change resourceType or id.", "processing", [f"{rt}.id"])
        validate_resource(patched)
        ctx.access.check_write("patch", rt, patched, doc)
        patched = self.before_write(ctx, rt, rid, patched, doc)
        expected = parse_etag(if_match) if if_match else current.vid
        version, _ = self.repository.update(rt, rid, patched, expected, method="PATCH")
        return self.written(ctx, version, 200)

    def conditional_patch(self, ctx: RequestContext, rt: str, query: str, operations, if_match: str | None) -> Result:
        require_type(rt, "patch")
        matches = self.match(ctx, rt, query, "conditional patch")
        if not matches:
            raise not_found(f"No {rt} matches '{query}'.")
        if len(matches) > 1:
            raise precondition_failed(f"The conditional patch matches {len(matches)} resources.")
        return self.patch(ctx, rt, matches[0].rid, operations, if_match)

    def delete(self, ctx: RequestContext, rt: str, rid: str, if_match: str | None = None) -> Result:
        require_type(rt, "delete")
        ctx.access.require(rt, "delete")
        doc = self.repository.current_doc(rt, rid, with_index=True)
        if doc is not None and doc["state"] == "live":
            if not ctx.access.visible(doc):
                raise not_found(f"{rt}/{rid} is not known.")
            ctx.access.check_write("delete", rt, None, doc)
        version = self.repository.delete(rt, rid, parse_etag(if_match))
        headers = {"ETag": version.etag} if version else {}
        return Result(204, None, headers)

    def conditional_delete(self, ctx: RequestContext, rt: str, query: str) -> Result:
        require_type(rt, "delete")
        matches = self.match(ctx, rt, query, "conditional delete")
        if len(matches) > 1:
            raise precondition_failed(
                f"The conditional delete matches {len(matches)} resources; this server deletes one at a time."
            )
        if matches:
            self.delete(ctx, rt, matches[0].rid)
        return Result(204)

    # ---------------------------------------------------------------- helpers
    def match(self, ctx: RequestContext, rt: str, query: str, what: str) -> list[Version]:
        from urllib.parse import parse_qsl

        params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
        if not params:
            raise bad_request(f"The {what} criteria are empty.", [what])
        request = self.search.parse(rt, params, strict=True)
        if not request.criteria:  # only result parameters (_format, _count, _sort...): they would match everything
            raise bad_request(f"The {what} criteria select nothing: name at least one search parameter.", [what])
        request.count, request.total, request.includes, request.revincludes = 2, "none", [], []
        return self.search.execute(request, (ctx.base_url,), access=ctx.access).matches

    def written(self, ctx: RequestContext, version: Version, status: int) -> Result:
        location = f"{version.rt}/{version.rid}/_history/{version.vid}"
        headers = version_headers(version)
        headers["Location"] = f"{ctx.base_url}/{location}"
        if ctx.prefer_return == "minimal":
            return Result(status, None, headers, location=location)
        if ctx.prefer_return == "OperationOutcome":
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [Issue(f"{location} written.", "informational", "information").to_fhir()],
            }
            return Result(status, outcome, headers, location=location)
        return Result(status, version.resource, headers, location=location)


_EXTENSIONS = {
    "application/pdf": ".pdf", "text/plain": ".txt", "image/jpeg": ".jpg", "image/png": ".png",
    "image/tiff": ".tiff", "application/rtf": ".rtf", "text/rtf": ".rtf", "application/xml": ".xml",
    "text/xml": ".xml", "application/hl7-v3+xml": ".xml",
}


def _extension(content_type: str) -> str:
    return _EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One 'bytes=a-b', 'bytes=a-' or 'bytes=-n' range (multipart ranges are not served)."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec or "-" not in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return None
            return max(size - length, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def apply_json_patch(resource: dict, operations) -> dict:
    if not isinstance(operations, list):
        raise bad_request("A JSON Patch document is a JSON array of operations.", code="structure")
    try:
        return jsonpatch.JsonPatch(operations).apply(resource, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise FhirError(422, f"JSON Patch test failed: {exc}", "processing") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise FhirError(422, f"The JSON Patch cannot be applied: {exc}", "processing") from None


def _not_modified(ctx: RequestContext, version: Version) -> bool:
    inm = ctx.headers.get("if-none-match")
    if inm:
        tags = [t.strip() for t in inm.split(",")]
        return "*" in tags or version.etag in tags or f'"{version.vid}"' in tags
    ims = ctx.headers.get("if-modified-since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return version.ts.replace(microsecond=0) <= since
    return False


__all__ = ["ResourceInteractions", "fhir_instant"]
