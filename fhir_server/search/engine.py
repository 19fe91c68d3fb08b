"""Executes a search: request parameters -> MongoDB filter, keyset paging, includes, totals."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from fhir_server.fhir.errors import bad_request
from fhir_server.fhir.resource_types import RESOURCE_TYPES
from fhir_server.fhir.terminology import value_set_codes
from fhir_server.policy.access import NOTHING
from fhir_server.search.compiler import (
    Compiler,
    ParsedParam,
    parse_date,
    range_conditions,
    split_prefix,
    split_values,
)
from fhir_server.search.dates import MIN_INSTANT
from fhir_server.search.registry import SearchParam, SearchRegistry
from fhir_server.storage.repository import Repository, Version, as_utc

RESULT_PARAMS = {
    "_sort", "_count", "_include", "_revinclude", "_summary", "_total", "_elements",
    "_contained", "_containedType", "_format", "_pretty", "_page", "_cursor",
}
SUMMARY_MODES = ("true", "false", "text", "data", "count")
TOTAL_MODES = ("none", "estimate", "accurate")
MAX_INCLUDE_ITERATIONS = 4


@dataclass
class SearchRequest:
    resource_type: str | None
    criteria: list[tuple[str, str]]  # (name with modifiers/chains, raw value), result params removed
    sort: list[tuple[str, int]] = field(default_factory=list)
    count: int = 50
    includes: list[str] = field(default_factory=list)
    revincludes: list[str] = field(default_factory=list)
    summary: str | None = None
    total: str = "accurate"
    elements: list[str] | None = None
    cursor: dict | None = None
    unknown: list[str] = field(default_factory=list)
    compartment: str | None = None  # "Patient/123"
    types: list[str] | None = None  # system-level search restricted to these types (_type, $everything)


@dataclass
class SearchResult:
    matches: list[Version]
    included: list[Version]
    total: int | None
    next_cursor: dict | None
    prev_cursor: dict | None


def encode_cursor(cursor: dict) -> str:
    raw = orjson.dumps(cursor, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> dict:
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = orjson.loads(base64.urlsafe_b64decode(padded))
        for key in ("after", "before"):
            if cursor.get(key):
                cursor[key] = [_revive(v) for v in cursor[key]]
        return cursor
    except Exception:
        raise bad_request("The paging cursor is not valid (it may belong to another search).", ["_cursor"])


def _json_default(value):
    if isinstance(value, datetime):
        return {"$d": value.isoformat()}
    raise TypeError


def _revive(value):
    if isinstance(value, dict) and "$d" in value:
        return as_utc(datetime.fromisoformat(value["$d"]))
    return value


ARCHIVABLE = ("DocumentReference", "List")


def leave_archived_out(request: "SearchRequest") -> None:
    """PDSm: an archived document or submission set stays current but leaves the searches that
    do not ask for it (by isArchived or _id). Searches only: conditional matches are lookups."""
    if request.resource_type in ARCHIVABLE and not {criterion_code(n) for n, _ in request.criteria} & {"isArchived", "_id"}:
        request.criteria.append(("isArchived:not", "true"))


def criterion_code(name: str) -> str:
    """The parameter code of a criterion name: 'patient.identifier' and 'status:not' give 'patient', 'status'."""
    return name.split(".")[0].split(":")[0]


class SearchEngine:
    def __init__(self, repository: Repository, registry: SearchRegistry, max_count: int, default_count: int):
        self.repository = repository
        self.registry = registry
        self.max_count = max_count
        self.default_count = default_count

    # ------------------------------------------------------------ parsing
    def parse(
        self,
        resource_type: str | None,
        params: list[tuple[str, str]],
        strict: bool = False,
    ) -> SearchRequest:
        request = SearchRequest(resource_type, [], count=self.default_count)
        for name, value in params:
            base = name.split(".")[0].split(":")[0]
            if base == "_sort":
                request.sort = self._parse_sort(resource_type, value)
            elif base == "_count":
                if not value.isdigit():
                    raise bad_request("_count must be a non-negative integer.", ["_count"])
                request.count = min(int(value), self.max_count)
            elif base == "_include":
                request.includes.append(name + "=" + value)
            elif base == "_revinclude":
                request.revincludes.append(name + "=" + value)
            elif base == "_summary":
                if value not in SUMMARY_MODES:
                    raise bad_request(f"_summary must be one of {', '.join(SUMMARY_MODES)}.", ["_summary"])
                request.summary = None if value == "false" else value
            elif base == "_total":
                if value not in TOTAL_MODES:
                    raise bad_request(f"_total must be one of {', '.join(TOTAL_MODES)}.", ["_total"])
                request.total = value
            elif base == "_elements":
                request.elements = [e.strip() for e in value.split(",") if e.strip()]
            elif base == "_cursor":
                request.cursor = decode_cursor(value)
            elif base == "_type" and resource_type is None:
                request.types = [t for t in value.split(",") if t]
                bad = [t for t in request.types if t not in RESOURCE_TYPES]
                if bad:
                    raise bad_request(f"_type: unknown resource type(s) {', '.join(bad)}.", ["_type"])
            elif base in ("_format", "_pretty", "_contained", "_containedType", "_page"):
                continue
            elif base == "_has" or self._known(resource_type, base):
                request.criteria.append((name, value))
            else:
                if strict:
                    raise bad_request(f"Unknown search parameter '{name}' for {resource_type or 'the system'}.", [name])
                request.unknown.append(name)
        return request

    def _known(self, resource_type: str | None, code: str) -> bool:
        if resource_type is None:
            return code in ("_id", "_lastUpdated")
        return code in self.registry.params_for(resource_type)

    def _parse_sort(self, resource_type: str | None, value: str) -> list[tuple[str, int]]:
        keys = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            direction = -1 if item.startswith("-") else 1
            code = item.lstrip("-")
            if code == "_lastUpdated":
                keys.append(("ts", direction))
            elif code == "_id":
                keys.append(("_id", direction))
            elif resource_type and self.registry.sortable(resource_type, code):
                keys.append((f"sk.{code}", direction))
            else:
                allowed = ", ".join(
                    ["_id", "_lastUpdated"]
                    + [c for c in self.registry.sort_codes() if resource_type and c in self.registry.params_for(resource_type)]
                )
                raise bad_request(
                    f"Cannot sort {resource_type or 'a system search'} on '{code}': the sortable parameters are {allowed}.",
                    ["_sort"],
                )
        return keys

    # ------------------------------------------------------------ filter
    def build_filter(self, request: SearchRequest, base_prefixes: tuple[str, ...] = (), access=None) -> dict:
        """The MongoDB filter of a search; the caller's access filter is part of it, so nothing
        hidden is ever matched, counted, sorted or paged over."""
        query: dict[str, Any] = {"state": "live"}
        if request.resource_type:
            types = [request.resource_type]
        elif request.types:
            types = [t for t in RESOURCE_TYPES if t in request.types]
            if "AuditEvent" in types and len(types) > 1:
                raise bad_request("AuditEvent is searched on its own (_type=AuditEvent or /AuditEvent).", ["_type"])
        else:
            # system searches, compartment '*' and $everything cover clinical data, not the audit trail
            types = [t for t in RESOURCE_TYPES if t != "AuditEvent"]
        clauses = []
        if access is not None:
            allowed = [(t, access.read_filter(t, "s")) for t in types]
            allowed = [(t, f) for t, f in allowed if f != NOTHING]
            types = [t for t, _ in allowed]
            if any(f for _, f in allowed):
                branches = [{"$and": [{"rt": t}, f]} if f else {"rt": t} for t, f in allowed]
                clauses.append(branches[0] if len(branches) == 1 else {"$or": branches})
        query["rt"] = types[0] if request.resource_type and types else {"$in": types}
        if request.compartment:
            query["comp"] = request.compartment
        compiler = Compiler(base_prefixes)
        for name, raw in request.criteria:
            clauses.append(self._clause(request.resource_type, name, raw, compiler, access))
        if clauses:
            query["$and"] = clauses
        return query

    def criterion(self, resource_type: str, name: str, value: str) -> dict:
        """One search criterion as a filter (used for SMART v2 scope restrictions)."""
        return self._clause(resource_type, name, value, Compiler(()), None)

    def _clause(self, resource_type: str | None, name: str, raw: str, compiler: Compiler, access=None) -> dict:
        if name.startswith("_has:"):
            return self._has_clause(resource_type, name, raw, compiler, access)
        head, _, chain = name.partition(".")
        code, _, modifier = head.partition(":")
        values = split_values(raw)
        if code == "_id":
            if modifier == "missing":
                return {} if raw == "false" else {"_id": {"$exists": False}}
            keys = self._keys(resource_type, [v for v in values if v])
            return {"_id": {"$in": keys}} if modifier != "not" else {"_id": {"$nin": keys}}
        if code == "_lastUpdated" and resource_type is None:
            param = SearchParam("Resource", "_lastUpdated", "date", "")
        else:
            param = self.registry.get(resource_type or "", code)
        if param is None:
            raise bad_request(f"Unknown search parameter '{code}'.", [name])
        if code == "_lastUpdated":
            if modifier == "missing":  # every stored resource has one
                return {"_id": {"$exists": False}} if raw == "true" else {}
            return self._last_updated(values, name)
        parsed = ParsedParam(name, code, modifier or None, chain or None, values)
        return compiler.compile(
            param, parsed, resolve_chain=self._resolve_chain(compiler, access), value_set_codes=value_set_codes
        )

    @staticmethod
    def _last_updated(values: list[str], name: str) -> dict:
        """`ts` is one instant: the stored range is [ts, ts]."""
        ors = []
        for value in values:
            prefix, raw = split_prefix(value)
            lo, hi = parse_date(name, raw)
            cond = range_conditions("ts", prefix, lo, hi)
            ors.append(_instant_condition(cond))
        return ors[0] if len(ors) == 1 else {"$or": ors}

    def _resolve_chain(self, compiler: Compiler, access=None):
        def resolve(param: SearchParam, parsed: ParsedParam) -> list[str]:
            targets = list(param.target) or list(RESOURCE_TYPES)
            if parsed.modifier and parsed.modifier[0].isupper():
                targets = [parsed.modifier]
            chain = parsed.chain or ""
            refs: list[str] = []
            usable = [t for t in targets if t in RESOURCE_TYPES]
            for target in usable:
                head = chain.split(".")[0].split(":")[0]
                if head not in ("_id", "_has") and self.registry.get(target, head) is None:
                    continue
                sub = SearchRequest(target, [(chain, ",".join(parsed.values))])
                query = self.build_filter(sub, compiler.base_url_prefixes, access)
                refs.extend(f"{target}/{d['rid']}" for d in self.repository.find_docs(query, {"rid": 1}))
            if not any(self.registry.get(t, chain.split(".")[0].split(":")[0]) for t in usable):
                raise bad_request(f"'{parsed.name}': '{chain}' is not a parameter of {', '.join(usable)}.", [parsed.name])
            return refs

        return resolve

    def _has_clause(self, resource_type: str | None, name: str, raw: str, compiler: Compiler, access=None) -> dict:
        # _has:Type:reference:param=value  (param may itself be _has:... or chained)
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise bad_request(f"'{name}' must read _has:Type:reference:parameter.", [name])
        _, other_type, ref_code, rest = parts
        if other_type not in RESOURCE_TYPES:
            raise bad_request(f"'{name}': unknown resource type {other_type}.", [name])
        if self.registry.get(other_type, ref_code) is None:
            raise bad_request(f"'{name}': {ref_code} is not a parameter of {other_type}.", [name])
        sub = SearchRequest(other_type, [(rest, raw)])
        query = self.build_filter(sub, compiler.base_url_prefixes, access)  # a hidden resource matches nothing
        refs: set[str] = set()
        for doc in self.repository.find_docs(query, {"ix.rf": 1}):
            for code, target in _references(doc):
                if code == ref_code and (resource_type is None or target.startswith(resource_type + "/")):
                    refs.add(target)
        return {"_id": {"$in": sorted(refs)}}

    @staticmethod
    def _keys(resource_type: str | None, ids: list[str]) -> list[str]:
        """Resource ids as storage keys ("Type/id"), for every type at system level."""
        types = [resource_type] if resource_type else list(RESOURCE_TYPES)
        return [f"{t}/{i}" for t in types for i in ids]

    # ------------------------------------------------------------ execution
    def execute(self, request: SearchRequest, base_prefixes: tuple[str, ...] = (), access=None) -> SearchResult:
        query = self.build_filter(request, base_prefixes, access)
        total = None
        if request.summary == "count" or request.total in ("accurate", "estimate"):
            total = self.repository.count(query)
        if request.summary == "count" or request.count == 0:
            return SearchResult([], [], total, None, None)
        sort = list(request.sort) if request.sort else [("ts", -1), ("_id", -1)]
        if "_id" not in [field for field, _ in sort]:
            sort.append(("_id", 1))  # a stable tie-break makes keyset paging exact
        page_query = query
        backwards = bool(request.cursor and request.cursor.get("before"))
        if request.cursor:
            boundary = request.cursor.get("after") or request.cursor.get("before")
            page_query = {"$and": [query, _keyset(sort, boundary, backwards)]}
        run_sort = [(f, -d) for f, d in sort] if backwards else sort
        projection = {"ix": 0}
        docs = list(self.repository.find_docs(page_query, projection, run_sort, request.count + 1))
        has_more = len(docs) > request.count
        docs = docs[: request.count]
        if backwards:
            docs.reverse()
        matches = [self.repository._version_from_current(d) for d in docs]
        keys = [_sort_values(d, sort) for d in docs]
        next_cursor = prev_cursor = None
        if docs:
            if (has_more and not backwards) or backwards:
                next_cursor = {"after": keys[-1]}
            if request.cursor and (not backwards or has_more):
                prev_cursor = {"before": keys[0]}
        included = self.includes(request, matches, access)
        return SearchResult(matches, included, total, next_cursor, prev_cursor)

    def includes(self, request: SearchRequest, matches: list[Version], access=None) -> list[Version]:
        seen = {v.key for v in matches}
        included: list[Version] = []
        frontier = list(matches)
        iterate_includes = [i for i in request.includes if ":iterate" in i.split("=")[0]]
        iterate_rev = [i for i in request.revincludes if ":iterate" in i.split("=")[0]]
        rounds = 0
        includes, revincludes = request.includes, request.revincludes
        while frontier and (includes or revincludes) and rounds < MAX_INCLUDE_ITERATIONS:
            found: list[Version] = []
            for spec in includes:
                found += self._forward(spec, frontier, access)
            for spec in revincludes:
                found += self._reverse(spec, frontier, access)
            new = []
            for version in found:
                if version.key not in seen:
                    seen.add(version.key)
                    new.append(version)
            included += new
            frontier = new
            includes, revincludes = iterate_includes, iterate_rev
            rounds += 1
        return included

    def _parse_include(self, spec: str) -> tuple[str, str, str | None]:
        value = spec.split("=", 1)[1]
        parts = value.split(":")
        if value == "*":
            return "*", "*", None
        if len(parts) < 2:
            raise bad_request(f"_include value '{value}' must read Type:parameter[:TargetType].", ["_include"])
        return parts[0], parts[1], parts[2] if len(parts) > 2 else None

    def _visible(self, query: dict, types: list[str], access) -> dict:
        """`query` narrowed to what the caller may read of each type (included resources leave the server too)."""
        if access is None:
            return query
        allowed = []
        for rt in types:
            if not access.principal.scopes.allows(rt, "r") and access.kind != "operator":
                continue
            rule = access.read_filter(rt, "r")
            if rule != NOTHING:
                allowed.append({"$and": [{"rt": rt}, rule]} if rule else {"rt": rt})
        if not allowed:
            return NOTHING
        return {"$and": [query, {"$or": allowed}]}

    def _forward(self, spec: str, frontier: list[Version], access=None) -> list[Version]:
        source_type, code, target = self._parse_include(spec)
        refs: set[str] = set()
        keys = [v.key for v in frontier if source_type in ("*", v.rt)]
        if not keys:
            return []
        for doc in self.repository.find_docs({"_id": {"$in": keys}}, {"ix.rf": 1, "rt": 1, "res.content": 1}):
            if code == "*" and doc["rt"] == "DocumentReference":
                # the document's content is part of "everything it points to"
                for content in (doc.get("res") or {}).get("content", []):
                    url = (content.get("attachment") or {}).get("url") or ""
                    if url.startswith("Binary/") and url.count("/") == 1:
                        refs.add(url)
            for ref_code, ref in _references(doc):
                if code != "*" and ref_code != code:
                    continue
                if ref.count("/") == 1 and ref.split("/")[0] in RESOURCE_TYPES and (
                    target is None or ref.startswith(target + "/")
                ):
                    refs.add(ref)
        if not refs:
            return []
        types = sorted({r.split("/")[0] for r in refs})
        query = self._visible({"_id": {"$in": sorted(refs)}, "state": "live"}, types, access)
        return list(self.repository.find(query)) if query != NOTHING else []

    def _reverse(self, spec: str, frontier: list[Version], access=None) -> list[Version]:
        source_type, code, target = self._parse_include(spec)
        if source_type not in RESOURCE_TYPES:
            raise bad_request(f"_revinclude: unknown resource type '{source_type}'.", ["_revinclude"])
        if code != "*" and self.registry.get(source_type, code) is None:
            raise bad_request(f"_revinclude: {code} is not a parameter of {source_type}.", ["_revinclude"])
        keys = [v.key for v in frontier if target is None or v.rt == target]
        if not keys:
            return []
        codes = [code] if code != "*" else [
            p.code for p in self.registry.params_for(source_type).values() if p.type == "reference"
        ]
        wanted = [f"{c}|{k}" for c in codes for k in keys]
        query = self._visible({"rt": source_type, "state": "live", "ix.rf": {"$in": wanted}}, [source_type], access)
        return list(self.repository.find(query)) if query != NOTHING else []


def _references(doc: dict):
    """(parameter code, 'Type/id') pairs of a stored document's reference keys."""
    for key in (doc.get("ix") or {}).get("rf", []):
        code, _, ref = key.partition("|")
        yield code, ref


def _instant_condition(cond: dict) -> dict:
    """Range conditions written for [lo, hi] entries, applied to the single instant `ts`."""
    out: list[dict] = []
    for key, value in cond.items():
        if key == "$or":
            return {"$or": [_instant_condition(c) for c in value]}
        for op, bound in value.items():
            out.append({"ts": {op: bound}})  # "ts.lo" and "ts.hi" are both ts
    return out[0] if len(out) == 1 else {"$and": out}


def _sort_values(doc: dict, sort: list[tuple[str, int]]) -> list:
    values = []
    for field_name, _ in sort:
        if field_name.startswith("sk."):
            values.append((doc.get("sk") or {}).get(field_name[3:]))
        elif field_name == "ts":
            values.append(as_utc(doc["ts"]))
        else:
            values.append(doc[field_name])
    return values


def _keyset(sort: list[tuple[str, int]], boundary: list, backwards: bool) -> dict:
    """Documents strictly after (or before) `boundary` in the sort order: (a > x) or (a = x and b > y)..."""
    ors = []
    for i, (field_name, direction) in enumerate(sort):
        eqs = {sort[j][0]: boundary[j] for j in range(i)}
        forward = direction == 1
        if backwards:
            forward = not forward
        value = boundary[i]
        if value is None:
            # missing values sort first ascending: everything non-missing is after them
            cond = {field_name: {"$ne": None}} if forward else None
        else:
            cond = {field_name: {"$gt" if forward else "$lt": value}}
            if not forward:
                cond = {"$or": [cond, {field_name: None}]}
        if cond is not None:
            ors.append({**eqs, **cond} if "$or" not in cond else {"$and": [eqs, cond]} if eqs else cond)
    return {"$or": ors} if ors else {"_id": {"$exists": False}}


__all__ = ["SearchEngine", "SearchRequest", "SearchResult", "encode_cursor", "MIN_INSTANT"]
