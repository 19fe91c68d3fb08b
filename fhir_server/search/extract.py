"""Index extraction at write time: the registry's FHIRPath expressions, evaluated with fhirpathpy,
turned into flat, normalised keys stored beside the resource (the `ix` sub-document).

Flat keys rather than arrays of sub-documents: equality on a multikey array of strings, an
anchored prefix regex on it, and range queries on scalar fields are what every MongoDB
wire-protocol server indexes (FerretDB 1.x has no `$elemMatch` on sub-documents), so one shape
serves MongoDB and FerretDB alike.

  ix.tk  tokens      "code|system|value" and "code|*|value" (any system); "code:text|folded text";
                     "code:of-type|typesystem|typecode|value"; booleans and codes as tokens
  ix.st  strings     "code|folded"        (accents removed, lower case: prefix and contains search)
  ix.sx  strings     "code|exact"         (:exact)
  ix.rf  references  "code|Type/id" or "code|url"
  ix.ur  uris        "code|uri"
  ix.pp  present     parameter codes with at least one value (:missing)
  ix.dt  dates       {code: {"lo": instant, "hi": instant}} (the hull of every value)
  ix.nm  numbers     {code: {"n": value, "s": system, "c": unit}} (smallest value)
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
ANY_SYSTEM = "*"


def fold(text: str) -> str:
    """Lower-case, accents removed, white space collapsed: 'Hélène  Lefèvre' -> 'helene lefevre'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def token_key(code: str, system: str | None, value: str) -> str:
    return f"{code}|{system or ''}|{value}"


class _Keys:
    """Accumulates the index keys of one resource."""

    def __init__(self) -> None:
        self.tk: list[str] = []
        self.st: list[str] = []
        self.sx: list[str] = []
        self.rf: list[str] = []
        self.ur: list[str] = []
        self.pp: list[str] = []
        self.dt: dict[str, dict] = {}
        self.nm: dict[str, dict] = {}
        self.sort: dict[str, object] = {}

    def token(self, code: str, system: str | None, value) -> None:
        value = str(value)
        self.tk.append(token_key(code, system, value))
        self.tk.append(token_key(code, ANY_SYSTEM, value))
        self._sort(code, value)

    def text(self, code: str, text: str) -> None:
        self.tk.append(f"{code}:text|{fold(text)}")

    def string(self, code: str, text: str) -> None:
        self.st.append(f"{code}|{fold(text)}")
        self.sx.append(f"{code}|{text}")
        self._sort(code, fold(text))

    def reference(self, code: str, ref: str) -> None:
        self.rf.append(f"{code}|{ref}")
        self._sort(code, ref)

    def uri(self, code: str, uri: str) -> None:
        self.ur.append(f"{code}|{uri}")
        self._sort(code, uri)

    def date(self, code: str, lo, hi) -> None:
        current = self.dt.get(code)
        if current is None:
            self.dt[code] = {"lo": lo, "hi": hi}
        else:
            current["lo"], current["hi"] = min(current["lo"], lo), max(current["hi"], hi)
        self._sort(code, lo)

    def number(self, code: str, number: float, system: str | None = None, unit: str | None = None) -> None:
        current = self.nm.get(code)
        if current is None or number < current["n"]:
            entry: dict = {"n": number}
            if system:
                entry["s"] = system
            if unit:
                entry["c"] = unit
            self.nm[code] = entry
        self._sort(code, number)

    def _sort(self, code: str, value) -> None:
        current = self.sort.get(code)
        if current is None or value < current:
            self.sort[code] = value

    def document(self) -> dict:
        doc: dict = {}
        for name in ("tk", "st", "sx", "rf", "ur", "pp"):
            values = list(dict.fromkeys(getattr(self, name)))
            if values:
                doc[name] = values
        if self.dt:
            doc["dt"] = self.dt
        if self.nm:
            doc["nm"] = self.nm
        return doc


# ------------------------------------------------------------------ per-type extraction
def _token(keys: _Keys, code: str, value) -> bool:
    if isinstance(value, bool):
        keys.token(code, None, "true" if value else "false")
        return True
    if isinstance(value, (str, int)):
        keys.token(code, None, value)
        return True
    if not isinstance(value, dict):
        return False
    found = False
    if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
        for coding in value.get("coding") or []:
            found |= _coding(keys, code, coding)
        if value.get("text"):
            keys.text(code, value["text"])
            found = True
        return found
    if "value" in value:  # Identifier or ContactPoint
        keys.token(code, value.get("system"), value["value"])
        for coding in (value.get("type") or {}).get("coding") or []:
            keys.tk.append(f"{code}:of-type|{coding.get('system', '')}|{coding.get('code', '')}|{value['value']}")
        if (value.get("type") or {}).get("text"):
            keys.text(code, value["type"]["text"])
        return True
    return _coding(keys, code, value)


def _coding(keys: _Keys, code: str, coding: dict) -> bool:
    found = False
    if coding.get("code") is not None:
        keys.token(code, coding.get("system"), coding["code"])
        found = True
    if coding.get("display"):
        keys.text(code, coding["display"])
        found = True
    return found


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
            parts = tuple(k for k in value if k not in ("use", "period", "extension", "id"))
        return [s for k in parts if k in value for s in _strings(value[k])]
    return []


def _string(keys: _Keys, code: str, value) -> bool:
    found = False
    for text in _strings(value):
        if text:
            keys.string(code, text)
            found = True
    return found


def _date(keys: _Keys, code: str, value) -> bool:
    try:
        if isinstance(value, str):
            lo, hi = date_range(value)
        elif isinstance(value, dict) and ("start" in value or "end" in value):  # Period
            lo = date_range(value["start"])[0] if value.get("start") else MIN_INSTANT
            hi = date_range(value["end"])[1] if value.get("end") else MAX_INSTANT
        elif isinstance(value, dict) and value.get("event"):  # Timing
            ranges = [date_range(e) for e in value["event"]]
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        else:
            return False
    except DateFormatError:
        return False
    keys.date(code, lo, hi)
    return True


def reference_target(ref: str) -> str:
    """'http://x/fhir/Patient/1/_history/2' -> 'Patient/1'; other strings unchanged."""
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2][:1].isupper() and not ref.startswith(("urn:", "#")):
        return "/".join(parts[-2:])
    return ref


def _reference(keys: _Keys, code: str, value) -> bool:
    if isinstance(value, str):  # canonical or uri
        keys.reference(code, value)
        return True
    if not isinstance(value, dict):
        return False
    found = False
    ref = value.get("reference")
    if isinstance(ref, str) and ref:
        keys.reference(code, reference_target(ref))
        found = True
    ident = value.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        keys.token(code, ident.get("system"), ident["value"])
        found = True
    return found


def _number(keys: _Keys, code: str, value) -> bool:
    raw = value.get("value") if isinstance(value, dict) else value
    try:
        number = float(Decimal(str(raw)))
    except (InvalidOperation, ValueError):
        return False
    if isinstance(value, dict):
        keys.number(code, number, value.get("system"), value.get("code") or value.get("unit"))
    else:
        keys.number(code, number)
    return True


def _uri(keys: _Keys, code: str, value) -> bool:
    if isinstance(value, str):
        keys.uri(code, value)
        return True
    return False


EXTRACTORS: dict[str, Callable[[_Keys, str, object], bool]] = {
    "token": _token,
    "string": _string,
    "date": _date,
    "reference": _reference,
    "number": _number,
    "quantity": _number,
    "uri": _uri,
}


def composite_key(code: str, parts: list[str]) -> str:
    return f"{code}|$" + "$".join(parts)


def _component_values(param_type: str, value) -> list[str]:
    """The search-form values of one composite component: 'code' and 'system|code', or 'Type/id'."""
    keys = _Keys()
    if param_type == "reference":
        _reference(keys, "c", value)
        return [k.partition("|")[2] for k in keys.rf]
    if param_type == "token":
        _token(keys, "c", value)
        out = []
        for key in keys.tk:
            _, system, code = key.split("|", 2)
            out.append(code if system == ANY_SYSTEM else f"{system}|{code}")
        return out
    if param_type == "string":
        _string(keys, "c", value)
        return [k.partition("|")[2] for k in keys.st]
    return [str(value)] if isinstance(value, (str, int, float)) else []


def _compile(expression: str):
    return fhirpathpy.compile(expression, fhirpath_models["r4"])


class Indexer:
    """Compiles every expression once; `__call__` gives (index document, compartments, sort keys)."""

    def __init__(self, registry: SearchRegistry):
        self.registry = registry
        self._compiled: dict[str, list[tuple[SearchParam, Callable]]] = {}
        self._composites: dict[str, list[tuple[SearchParam, Callable, list[tuple[str, Callable]]]]] = {}
        for resource_type, params in registry.by_type.items():
            compiled, composites = [], []
            for param in params.values():
                if not param.expression:
                    continue
                try:
                    if param.type == "composite":
                        parts = [
                            (params[c].type if c in params else "token", _compile(expr))
                            for c, expr in param.components
                        ]
                        composites.append((param, _compile(param.expression), parts))
                    elif param.type in EXTRACTORS:
                        compiled.append((param, _compile(param.expression)))
                except Exception as exc:  # a broken registry entry must not stop the server
                    log.error("search parameter %s.%s not indexed: %s", resource_type, param.code, exc)
            self._compiled[resource_type] = compiled
            self._composites[resource_type] = composites

    def __call__(self, resource: dict) -> tuple[dict, list[str], dict]:
        resource_type = resource["resourceType"]
        keys = _Keys()
        for param, evaluate in self._compiled.get(resource_type, ()):
            try:
                values = evaluate(resource)
            except Exception as exc:
                log.warning("cannot evaluate %s.%s: %s", resource_type, param.code, exc)
                continue
            extractor = EXTRACTORS[param.type]
            present = False
            for value in values:
                present |= bool(extractor(keys, param.code, value))
            if present:
                keys.pp.append(param.code)
        for param, evaluate, parts in self._composites.get(resource_type, ()):
            try:
                items = evaluate(resource)
            except Exception as exc:
                log.warning("cannot evaluate %s.%s: %s", resource_type, param.code, exc)
                continue
            for item in items:
                combos: list[list[str]] = [[]]
                for part_type, part_eval in parts:
                    values = [v for raw in part_eval(item) for v in _component_values(part_type, raw)]
                    combos = [c + [v] for c in combos for v in values]
                for combo in combos:
                    if combo:
                        keys.tk.append(composite_key(param.code, combo))
                        keys.pp.append(param.code)
        return keys.document(), self.compartments(resource, keys.rf), keys.sort

    @staticmethod
    def compartments(resource: dict, references: list[str]) -> list[str]:
        resource_type = resource["resourceType"]
        comps = set()
        if resource_type == "Patient" and resource.get("id"):
            comps.add(f"Patient/{resource['id']}")
        members = PATIENT_COMPARTMENT.get(resource_type, ())
        for key in references:
            code, _, ref = key.partition("|")
            if code in members and ref.startswith("Patient/"):
                comps.add(ref)
        return sorted(comps)
