"""The conformance resources the server ships (profiles/): read and search, never written.

StructureDefinitions, ValueSets, ConceptMaps and OperationDefinitions live in files under version
control, not in the database: they describe the server, so they change with its code.
"""

from __future__ import annotations

from fhir_server.fhir.bundle import new_bundle
from fhir_server.fhir.errors import bad_request, not_found
from fhir_server.fhir.profiles import CONFORMANCE_FOLDERS, conformance_resources
from fhir_server.interactions.context import RequestContext, Result

CONFORMANCE_TYPES = tuple(CONFORMANCE_FOLDERS)
SEARCH_PARAMS = {"url": "http://hl7.org/fhir/SearchParameter/conformance-url",
                 "_id": "http://hl7.org/fhir/SearchParameter/Resource-id"}
IGNORED = {"_format", "_pretty", "_count", "_summary"}


def read(ctx: RequestContext, rt: str, rid: str) -> Result:
    resource = conformance_resources(rt).get(rid)
    if resource is None:
        raise not_found(f"{rt}/{rid} is not known.")
    return Result(200, resource)


def search(ctx: RequestContext, rt: str, params: list[tuple[str, str]]) -> Result:
    """Search by canonical url (with or without |version) or by id; other parameters are refused."""
    found = list(conformance_resources(rt).values())
    for name, value in params:
        if name in IGNORED:
            continue
        if name not in SEARCH_PARAMS:
            raise bad_request(f"{rt} is searched by url or _id only, not '{name}'.", [name])
        wanted = set(value.split(","))
        if name == "url":
            found = [r for r in found if r["url"] in wanted or f"{r['url']}|{r.get('version')}" in wanted]
        else:
            found = [r for r in found if r["id"] in wanted]
    bundle = new_bundle("searchset")
    bundle["total"] = len(found)
    bundle["link"] = [{"relation": "self", "url": f"{ctx.base_url}/{rt}"}]
    bundle["entry"] = [{"fullUrl": f"{ctx.base_url}/{rt}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                       for r in found]
    return Result(200, bundle)
