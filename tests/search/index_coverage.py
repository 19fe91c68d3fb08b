"""Records the MongoDB queries the repository runs, and checks them against the declared indexes.

FerretDB's planner is not MongoDB's, and real MongoDB is not installable here, so the index design
is proven statically: every filtered and sorted field of every query must be served by a declared
index, and every query must have an indexed access path (an equality prefix followed by one of its
constrained fields).
"""

from __future__ import annotations

from fhir_server.storage.documents import StoredResource

RECORDED: list[tuple[dict, list | None]] = []


def record(query: dict, sort) -> None:
    RECORDED.append((query, list(sort) if sort else None))


def declared_indexes(db) -> list[list[str]]:
    info = db[StoredResource._meta["collection"]].index_information()
    return [[field for field, _ in spec["key"]] for spec in info.values()]


def _fields(query, out: set[str]) -> set[str]:
    if isinstance(query, dict):
        for key, value in query.items():
            if key in ("$and", "$or", "$nor"):
                for sub in value:
                    _fields(sub, out)
            elif not key.startswith("$"):
                out.add(key)
    return out


def _conjunct_fields(query: dict) -> set[str]:
    """Fields constrained by the top-level AND (where an index prefix can be used)."""
    fields = {k for k in query if not k.startswith("$")}
    if "$or" in query and all(_conjunct_fields(b) & {"rt", "_id", "comp"} for b in query["$or"]):
        fields |= {"$or-union"} | set.intersection(*[_conjunct_fields(b) for b in query["$or"]])
    for sub in query.get("$and", []):
        fields |= _conjunct_fields(sub)
        if "$or" in sub and all(_conjunct_fields(b) for b in sub["$or"]):
            # an $or whose every branch is indexable is served by index union
            fields |= {"$or-union"}
    return fields


def problems(query: dict, sort, indexes: list[list[str]]) -> list[str]:
    found = []
    index_fields = {f for idx in indexes for f in idx}
    for field in _fields(query, set()):
        # per-parameter date ranges are indexed by code: ix.dt.<code>.lo/.hi
        if field not in index_fields:
            found.append(f"field {field!r} is in no declared index")
    conj = _conjunct_fields(query)
    access = any(
        idx[0] in conj and (len(idx) == 1 or idx[1] in conj or idx[0] == "_id" or idx[:2] == ["rt", "state"])
        for idx in indexes
    )
    if "$or" in query and not access:
        # a top-level $or is served by index union when every branch has its own access path
        access = all(not problems(branch, None, indexes) for branch in query["$or"])
    if not access and "_id" not in conj:
        found.append(f"no index gives an access path for fields {sorted(conj)}")
    for field, _ in sort or ():
        # each sort key has its own (rt, key, _id) index; several keys mean MongoDB merges on the first
        if field != "_id" and not any(idx[:3] in (["rt", field, "_id"], ["rt", "state", field]) for idx in indexes):
            found.append(f"sort key {field!r} is served by no declared index")
    return found
