"""The search parameter registry, loaded from `profiles/search-parameters.json`.

The same entries drive request parsing, index extraction at write time, the query compiler and
the CapabilityStatement's searchParam lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from fhir_server.fhir.resource_types import RESOURCE_TYPES

REGISTRY_FILE = Path(__file__).resolve().parent.parent.parent / "profiles" / "search-parameters.json"

# Which reference parameters put a resource into a Patient's compartment (FHIR R4
# CompartmentDefinition "patient", restricted to the types this server stores).
PATIENT_COMPARTMENT = {
    "Patient": ("link",),
    "RelatedPerson": ("patient",),
    "DocumentReference": ("subject", "author"),
    "List": ("subject", "source"),
    "Consent": ("patient",),
    "AuditEvent": ("patient",),
}


# Non-date parameters that `_sort` accepts (each gets an index; date parameters always do).
# Sorting elsewhere would be a blocking in-memory sort of the whole match set, so it is refused.
SORTABLE_CODES = ("family", "given", "name", "gender", "status", "type", "identifier", "title", "address-city")


@dataclass(frozen=True)
class SearchParam:
    base: str
    code: str
    type: str
    expression: str
    url: str = ""
    description: str = ""
    target: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = field(default=())


@dataclass
class SearchRegistry:
    by_type: dict[str, dict[str, SearchParam]]

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        return self.by_type.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.by_type.get(resource_type, {}).get(code)

    def date_codes(self) -> list[str]:
        return sorted({p.code for params in self.by_type.values() for p in params.values() if p.type == "date"})

    def sort_codes(self) -> list[str]:
        present = {p.code for params in self.by_type.values() for p in params.values()}
        return sorted(set(self.date_codes()) | (set(SORTABLE_CODES) & present))

    def sortable(self, resource_type: str, code: str) -> bool:
        return code in self.params_for(resource_type) and code in self.sort_codes()


def _load(path: Path) -> SearchRegistry:
    data = json.loads(path.read_text(encoding="utf-8"))
    common: list[SearchParam] = []
    by_type: dict[str, dict[str, SearchParam]] = {name: {} for name in RESOURCE_TYPES}
    for entry in data["parameters"]:
        param = SearchParam(
            base=entry["base"],
            code=entry["code"],
            type=entry["type"],
            expression=entry.get("expression", ""),
            url=entry.get("url", ""),
            description=entry.get("description", ""),
            target=tuple(entry.get("target", ())),
            components=tuple((c["code"], c["expression"]) for c in entry.get("component", ())),
        )
        if param.base == "Resource":
            common.append(param)
        elif param.base in by_type:
            by_type[param.base][param.code] = param
    for name, params in by_type.items():
        for param in common:
            expr = param.expression.replace("Resource.", f"{name}.", 1)
            params[param.code] = SearchParam(
                name, param.code, param.type, expr, param.url, param.description, param.target
            )
    return SearchRegistry(by_type)


@lru_cache(maxsize=None)
def load_registry(path: str = str(REGISTRY_FILE)) -> SearchRegistry:
    return _load(Path(path))
