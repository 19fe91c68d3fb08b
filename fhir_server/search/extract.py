"""Index extraction at write time: the registry's FHIRPath expressions, evaluated with fhirpathpy,
turned into small normalised entries that MongoDB indexes (see storage.documents.SEARCH_INDEXES).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import fhirpathpy
from fhirpathpy.models import models as fhirpath_models

from fhir_server.search.dates import MAX_INSTANT, MIN_INSTANT, DateFormatError, date_range
from fhir_server.search.registry import PATIENT_COMPARTMENT, SearchParam, SearchRegistry

log = logging.getLogger(__name__)


def fold(text: str) -> str:
    """Lower-case, accents removed, white space collapsed: 'Hélène  Lefèvre' -> 'helene lefevre'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def _token_entries(code: str, value) -> list[dict]:
    if isinstance(value, bool):
        return [{"p": code, "c": "true" if value else "false"}]
    if isinstance(value, (str, int)):
        return [{"p": code, "c": str(value)}]
    if not isinstance(value, dict):
        return []
    entries: list[dict] = []
    if "coding" in value or "text" in value and "value" not in value:  # CodeableConcept
        for coding in value.get("coding") or []:
            entries += _coding_entries(code, coding)
        if value.get("text"):
            entries.append({"p": code, "t": fold(value["text"])})
        return entries
    if "value" in value and ("system" in value or "type" in value or "use" in value or "assigner" in value):
        entry = {"p": code, "c": str(value["value"])}
        if value.get("system"):
            entry["s"] = value["system"]
        types = [
            f"{c.get('system', '')}|{c.get('code', '')}" for c in (value.get("type") or {}).get("coding") or []
        ]
        if types:
            entry["ty"] = types
        entries.append(entry)
        if (value.get("type") or {}).get("text"):
            entries.append({"p": code, "t": fold(value["type"]["text"])})
        return entries  # Identifier or ContactPoint
    if "code" in value or "system" in value:  # Coding
        return _coding_entries(code, value)
    if "value" in value:  # ContactPoint without system
        return [{"p": code, "c": str(value["value"])}]
    return entries


def _coding_entries(code: str, coding: dict) -> list[dict]:
    entries = []
    if coding.get("code") is not None:
        entry = {"p": code, "c": str(coding["code"])}
        if coding.get("system"):
            entry["s"] = coding["system"]
        entries.append(entry)
    if coding.get("display"):
        entries.append({"p": code, "t": fold(coding["display"])})
    return entries


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        parts = _NAME_PARTS if any(k in value for k in ("family", "given")) else _ADDRESS_PARTS
        if not any(k in value for k in parts):
            parts = tuple(value)
        return [s for k in parts if k in value for s in _strings(value[k])]
    return []


def _string_entries(code: str, value) -> list[dict]:
    return [{"p": code, "v": fold(s), "x": s} for s in _strings(value) if s]


def _date_entries(code: str, value) -> list[dict]:
    try:
        if isinstance(value, str):
            lo, hi = date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
            lo = date_range(value["start"])[0] if value.get("start") else MIN_INSTANT
            hi = date_range(value["end"])[1] if value.get("end") else MAX_INSTANT
        elif isinstance(value, dict) and "event" in value:  # Timing
            ranges = [date_range(e) for e in value["event"]]
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        else:
            return []
    except DateFormatError:
        return []
    return [{"p": code, "lo": lo, "hi": hi}]


def _reference_entries(code: str, value) -> list[dict]:
    if isinstance(value, str):  # canonical or uri
        return [{"p": code, "r": value}]
    if not isinstance(value, dict):
        return []
    entries = []
    ref = value.get("reference")
    if isinstance(ref, str) and ref:
        parts = ref.split("/_history/")[0].rstrip("/").split("/")
        entries.append({"p": code, "r": "/".join(parts[-2:]) if len(parts) >= 2 else ref})
    ident = value.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        entry = {"p": code, "c": str(ident["value"])}
        if ident.get("system"):
            entry["s"] = ident["system"]
        entries.append(entry)
    return entries


def _number_entries(code: str, value) -> list[dict]:
    raw = value.get("value") if isinstance(value, dict) else value
    try:
        number = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return []
    entry: dict = {"p": code, "n": float(number)}
    if isinstance(value, dict):  # Quantity
        if value.get("code") or value.get("unit"):
            entry["c"] = value.get("code") or value.get("unit")
        if value.get("system"):
            entry["s"] = value["system"]
    return [entry]


def _uri_entries(code: str, value) -> list[dict]:
    return [{"p": code, "u": value}] if isinstance(value, str) else []


EXTRACTORS: dict[str, Callable[[str, object], list[dict]]] = {
    "token": _token_entries,
    "string": _string_entries,
    "date": _date_entries,
    "reference": _reference_entries,
    "number": _number_entries,
    "quantity": _number_entries,
    "uri": _uri_entries,
}


class Indexer:
    """Compiles every expression once; `__call__` gives (index entries, compartments) of a resource."""

    def __init__(self, registry: SearchRegistry):
        self.registry = registry
        self._compiled: dict[str, list[tuple[SearchParam, Callable]]] = {}
        for resource_type, params in registry.by_type.items():
            compiled = []
            for param in params.values():
                if param.type not in EXTRACTORS or not param.expression:
                    continue
                try:
                    compiled.append((param, fhirpathpy.compile(param.expression, fhirpath_models["r4"])))
                except Exception as exc:  # a broken registry entry must not stop the server
                    log.error("search parameter %s.%s not indexed: %s", resource_type, param.code, exc)
            self._compiled[resource_type] = compiled

    def __call__(self, resource: dict) -> tuple[list[dict], list[str], dict]:
        """(index entries, compartments, sort keys) of a resource."""
        resource_type = resource["resourceType"]
        entries: list[dict] = []
        sort_keys: dict = {}
        for param, evaluate in self._compiled.get(resource_type, ()):
            try:
                values = evaluate(resource)
            except Exception as exc:
                log.warning("cannot evaluate %s.%s: %s", resource_type, param.code, exc)
                continue
            extractor = EXTRACTORS[param.type]
            param_entries = [e for value in values for e in extractor(param.code, value)]
            entries.extend(param_entries)
            sort_key = _sort_key(param.type, param_entries)
            if sort_key is not None:
                sort_keys[param.code] = sort_key
        return _dedupe(entries), self.compartments(resource, entries), sort_keys

    @staticmethod
    def compartments(resource: dict, entries: list[dict]) -> list[str]:
        resource_type = resource["resourceType"]
        comps = set()
        if resource_type == "Patient" and resource.get("id"):
            comps.add(f"Patient/{resource['id']}")
        members = PATIENT_COMPARTMENT.get(resource_type, ())
        for entry in entries:
            ref = entry.get("r")
            if entry["p"] in members and isinstance(ref, str) and ref.startswith("Patient/"):
                comps.add(ref)
        return sorted(comps)


def _sort_key(param_type: str, entries: list[dict]):
    """One scalar per parameter for `_sort` (the smallest value, as FHIR suggests for ascending)."""
    field = {"string": "v", "token": "c", "reference": "r", "uri": "u", "number": "n", "quantity": "n"}.get(
        param_type
    )
    if param_type == "date":
        values = [e["lo"] for e in entries if "lo" in e]
    elif field:
        values = [e[field] for e in entries if field in e]
    else:
        return None
    return min(values) if values else None


def _dedupe(entries: list[dict]) -> list[dict]:
    seen = set()
    unique = []
    for entry in entries:
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in entry.items()))
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return unique
