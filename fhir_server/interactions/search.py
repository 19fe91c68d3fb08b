"""search-type, search-system, compartment search and history, as Bundles."""

from __future__ import annotations

from fhir_server.fhir.bundle import full_url, link, new_bundle, page_url, shape
from fhir_server.fhir.errors import Issue, bad_request, not_found
from fhir_server.fhir.resource_types import RESOURCE_TYPES
from fhir_server.interactions.context import RequestContext, Result
from fhir_server.interactions.resources import require_type
from fhir_server.search.dates import DateFormatError, date_range
from fhir_server.search.engine import SearchEngine, criterion_code, encode_cursor, leave_archived_out
from fhir_server.storage.repository import Repository, Version

HISTORY_DEFAULT_COUNT = 50


def find_document_references_issue(criteria: list[tuple[str, str]]) -> Issue | None:
    """IHE MHD ITI-67: a consumer names the patient (patient or patient.identifier) and the status.
    A search by _id is a read in search form and needs neither. With `Prefer: handling=strict` a
    search without them is refused (400); by default it runs, with a warning in the Bundle, as FHIR's
    lenient handling does for other search problems, so generic FHIR clients keep working."""
    codes = {criterion_code(name) for name, _ in criteria}
    if "_id" in codes:
        return None
    missing = [p for p, names in (("patient", {"patient", "subject"}), ("status", {"status"})) if not codes & names]
    if not missing:
        return None
    return Issue("Find Document References (ITI-67) requires " + " and ".join(missing)
                 + " (patient or patient.identifier, plus status, e.g. status=current).", "required", "warning",
                 expression=missing)


class SearchInteractions:
    def __init__(self, repository: Repository, engine: SearchEngine):
        self.repository = repository
        self.engine = engine

    def search(
        self,
        ctx: RequestContext,
        rt: str | None,
        params: list[tuple[str, str]],
        self_path: str,
        compartment: str | None = None,
        types: list[str] | None = None,
    ) -> Result:
        if rt is not None:
            require_type(rt, "search-type")
            ctx.access.require(rt, "search-type")
        request = self.engine.parse(rt, params, strict=ctx.prefer_handling == "strict")
        request.compartment = compartment
        warnings = [Issue(f"Unknown search parameter '{n}' ignored.", "not-supported", "warning") for n in request.unknown]
        if rt == "DocumentReference" and compartment is None and (issue := find_document_references_issue(request.criteria)):
            if ctx.prefer_handling == "strict":
                raise bad_request(issue.diagnostics, issue.expression, code="required")
            warnings.append(issue)
        leave_archived_out(request)
        if types:
            request.types = types
        result = self.engine.execute(request, (ctx.base_url,), access=ctx.access)
        bundle = new_bundle("searchset")
        if result.total is not None:
            bundle["total"] = result.total
        base = f"{ctx.base_url}/{self_path}"
        kept = [(k, v) for k, v in params if k not in ("_cursor",) and k.split(":")[0] not in request.unknown]
        links = [link("self", page_url(base, params))]
        if request.cursor is not None or result.next_cursor:
            links.append(link("first", page_url(base, kept)))
        if result.prev_cursor:
            links.append(link("previous", page_url(base, kept + [("_cursor", encode_cursor(result.prev_cursor))])))
        if result.next_cursor:
            links.append(link("next", page_url(base, kept + [("_cursor", encode_cursor(result.next_cursor))])))
        bundle["link"] = links
        entries = [self._entry(ctx, v, "match", request.summary, request.elements) for v in result.matches]
        entries += [self._entry(ctx, v, "include", request.summary, request.elements) for v in result.included]
        if warnings:
            entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [w.to_fhir() for w in warnings]},
                            "search": {"mode": "outcome"}})
        if request.summary != "count":
            bundle["entry"] = entries
        return Result(200, bundle)

    def everything(self, ctx: RequestContext, rid: str, params: list[tuple[str, str]]) -> Result:
        """Patient/{id}/$everything: the patient's compartment (all types) plus what it references
        (authors, organisations, document contents), paged like a search."""
        require_type("Patient", "read")
        ctx.access.require("Patient", "read")
        doc = self.repository.current_doc("Patient", rid, with_index=True)
        if doc is not None and doc["state"] == "live" and not ctx.access.visible(doc):
            raise not_found(f"Patient/{rid} is not known.")
        self.repository.read("Patient", rid)  # 404 / 410
        allowed = {"_count", "_cursor", "_since", "_type", "_format", "_pretty"}
        unknown = [k for k, _ in params if k not in allowed]
        if unknown:
            raise bad_request(f"$everything does not take {', '.join(unknown)}.", unknown)
        search_params = [(k, v) for k, v in params if k in ("_count", "_cursor")]
        for key, value in params:
            if key == "_since":
                search_params.append(("_lastUpdated", f"ge{value}"))
        types = [t for k, v in params if k == "_type" for t in v.split(",")]
        search_params.append(("_include", "*"))
        return self.search(
            ctx, None, search_params, f"Patient/{rid}/$everything", compartment=f"Patient/{rid}", types=types or None
        )

    @staticmethod
    def _entry(ctx: RequestContext, version: Version, mode: str, summary, elements) -> dict:
        return {
            "fullUrl": full_url(ctx.base_url, version),
            "resource": shape(version.resource, summary, elements),
            "search": {"mode": mode},
        }

    # ---------------------------------------------------------------- history
    def history(
        self, ctx: RequestContext, rt: str | None, rid: str | None, params: list[tuple[str, str]], self_path: str
    ) -> Result:
        interaction = "history-instance" if rid else ("history-type" if rt else "history-system")
        if rt is not None:
            require_type(rt, interaction)
        for checked in [rt] if rt else [t for t in RESOURCE_TYPES]:
            ctx.access.require(checked, interaction)
        if rid is not None:
            doc = self.repository.current_doc(rt, rid, with_index=True)
            hidden = doc is not None and doc["state"] == "live" and not ctx.access.visible(doc)
            # a tombstone has no compartment left to decide on: its history is for system clients only
            tombstone = doc is not None and doc["state"] == "deleted" and ctx.access.kind not in ("system", "operator")
            if hidden or tombstone:
                raise not_found(f"{rt}/{rid} is not known.")
        count = HISTORY_DEFAULT_COUNT
        since = at = None
        cursor = None
        for name, value in params:
            if name == "_count":
                if not value.isdigit():
                    raise bad_request("_count must be a non-negative integer.", ["_count"])
                count = min(int(value), self.engine.max_count)
            elif name in ("_since", "_at"):
                try:
                    bound = date_range(value)
                except DateFormatError as exc:
                    raise bad_request(f"{name}: {exc}.", [name]) from None
                since, at = (bound[0], at) if name == "_since" else (since, bound)
            elif name == "_cursor":
                cursor = value
        if rid is not None:
            versions = self.repository.instance_history(rt, rid)
            if since:
                versions = [v for v in versions if v.ts >= since]
            total = len(versions)
            start = int(cursor) if cursor and cursor.isdigit() else 0
            page = versions[start : start + count]
            next_cursor = str(start + count) if start + count < total else None
        else:
            # system history covers the types with a type history (not Subscription: owners only)
            query: dict = {"rt": rt or {"$in": [t for t, d in RESOURCE_TYPES.items() if d.supports("history-type")]}}
            if since:
                query["ts"] = {"$gte": since}
            total = self.repository.count_history(query)
            if cursor:
                ts_part, _, id_part = cursor.partition("~")
                from datetime import datetime

                try:
                    boundary = datetime.fromisoformat(ts_part)
                except ValueError:
                    raise bad_request("The history paging cursor is not valid.", ["_cursor"]) from None
                query = {
                    "$and": [
                        query,
                        {"$or": [{"ts": {"$lt": boundary}}, {"ts": boundary, "_id": {"$lt": id_part}}]},
                    ]
                }
            page = self.repository.history(query, count + 1)
            has_more = len(page) > count
            page = page[:count]
            next_cursor = f"{page[-1].ts.isoformat()}~{page[-1].key}/{page[-1].vid}" if has_more and page else None
        bundle = new_bundle("history")
        bundle["total"] = total
        base = f"{ctx.base_url}/{self_path}"
        kept = [(k, v) for k, v in params if k != "_cursor"]
        bundle["link"] = [link("self", page_url(base, params))]
        if next_cursor:
            bundle["link"].append(link("next", page_url(base, kept + [("_cursor", next_cursor)])))
        bundle["entry"] = [self._history_entry(ctx, v) for v in page]
        return Result(200, bundle)

    @staticmethod
    def _history_entry(ctx: RequestContext, version: Version) -> dict:
        entry: dict = {"fullUrl": full_url(ctx.base_url, version)}
        if version.resource is not None:
            entry["resource"] = version.resource
        method = version.method or "PUT"
        url = version.rt if method == "POST" else f"{version.rt}/{version.rid}"
        entry["request"] = {"method": "PUT" if method == "PATCH" else method, "url": url}
        entry["response"] = {
            "status": "201 Created" if version.vid == 1 else ("204 No Content" if version.deleted else "200 OK"),
            "etag": version.etag,
            "lastModified": version.resource["meta"]["lastUpdated"] if version.resource else None,
        }
        if entry["response"]["lastModified"] is None:
            del entry["response"]["lastModified"]
        return entry
