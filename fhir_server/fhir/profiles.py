"""The DMP profiles: StructureDefinitions in `profiles/`, compiled to JSON Schema, plus their invariants.

A StructureDefinition's differential is the source of truth. Cardinalities, required bindings to
the value sets the server ships and fixed/pattern values compile to JSON Schema
(`profiles/schemas/<id>.schema.json`, written by `scripts/compile_profiles.py` and checked by a
test to be up to date); the FHIRPath invariants (`constraint`) run with fhirpathpy, the same
expressions the official validator evaluates. The conformance resources themselves (profiles,
value sets, concept maps, operation definitions) are served read-only from these files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import fhirpathpy
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models as fhirpath_models

from fhir_server.fhir.terminology import value_set, value_set_codes

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"
SCHEMAS_DIR = PROFILES_DIR / "schemas"
CANONICAL_BASE = "https://dmp-fhir.github.io/ig"
# The folders of profiles/ holding conformance resources, by the resource type they hold.
CONFORMANCE_FOLDERS = {
    "StructureDefinition": "structuredefinitions",
    "ValueSet": "valuesets",
    "ConceptMap": "conceptmaps",
    "OperationDefinition": "operations",
}


@lru_cache(maxsize=None)
def conformance_resources(resource_type: str) -> dict[str, dict]:
    """The shipped conformance resources of one type, by id."""
    folder = PROFILES_DIR / CONFORMANCE_FOLDERS[resource_type]
    out = {}
    for path in sorted(folder.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        out[resource["id"]] = resource
    return out


def structure_definition(url_or_id: str) -> dict | None:
    sds = conformance_resources("StructureDefinition")
    if url_or_id in sds:
        return sds[url_or_id]
    url = url_or_id.split("|")[0]
    return next((sd for sd in sds.values() if sd["url"] == url), None)


def profiles_for(resource_type: str) -> list[dict]:
    """The resource profiles (not extensions) constraining a type."""
    return [sd for sd in conformance_resources("StructureDefinition").values()
            if sd["kind"] == "resource" and sd["type"] == resource_type]


def _chain(sd: dict) -> list[dict]:
    """The profile and its ancestors among our own profiles, root first."""
    chain = [sd]
    while (base := structure_definition(chain[0]["baseDefinition"])) is not None:
        chain.insert(0, base)
    return chain


# ------------------------------------------------------------------ compiling to JSON Schema
@dataclass
class _Node:
    """One element of the resource tree, as far as the profile constrains it."""

    model: type | None
    datatype: str = "object"
    is_array: bool = False
    children: dict[str, "_Node"] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    min_items: int = 0
    max_items: int | None = None
    extra: list[dict] = field(default_factory=list)  # bindings, fixed and pattern values


_TYPE_NAME = re.compile(r"abc\.(\w+)Type\b")


def _field_node(model, name: str) -> _Node:
    if model is None or name not in model.model_fields:
        raise ValueError(f"unknown element {name} of {getattr(model, '__name__', '?')}")
    annotation = str(model.model_fields[name].annotation)
    is_array = "List[" in annotation
    match = _TYPE_NAME.search(annotation)
    if match:
        datatype = match.group(1)
        return _Node(get_fhir_model_class(datatype), datatype, is_array)
    return _Node(None, "code" if "Code()" in annotation else "primitive", is_array)


def _binding_schema(node: _Node, url: str, path: str) -> dict:
    codes = value_set_codes(url)
    if codes is None:
        raise ValueError(f"{path}: the required value set {url} is not shipped in profiles/valuesets")
    title = (value_set(url) or {}).get("title") or url
    description = f"{path} must come from the value set '{title}' ({url})."
    by_system: dict[str, list[str]] = {}
    for system, code in codes:
        by_system.setdefault(system, []).append(code)
    coding = {"anyOf": [
        {"required": ["system", "code"], "properties": {"system": {"const": s}, "code": {"enum": c}}}
        for s, c in by_system.items()
    ], "description": description}
    if node.datatype == "code":
        return {"enum": [c for _, c in codes], "description": description}
    if node.datatype == "Coding":
        return coding
    if node.datatype == "CodeableConcept":
        return {"required": ["coding"], "description": description,
                "properties": {"coding": {"contains": coding, "description": description}}}
    raise ValueError(f"{path}: a binding on a {node.datatype} cannot be compiled")


def _pattern_schema(value, path: str) -> dict:
    """A FHIR pattern: every array item of the pattern is contained, every property matches."""
    description = f"{path} must match the pattern {json.dumps(value, ensure_ascii=False)}."
    if isinstance(value, dict):
        return {"required": sorted(value), "description": description,
                "properties": {k: _pattern_schema(v, f"{path}.{k}") for k, v in value.items()}}
    if isinstance(value, list):
        return {"allOf": [{"contains": _pattern_schema(v, path)} for v in value], "description": description}
    return {"const": value, "description": description}


def _apply(root: _Node, element: dict) -> None:
    segments = element["path"].split(".")[1:]
    if not segments or any("[x]" in s for s in segments):
        return  # the root carries only invariants; choice types are left to the structural model
    parent, node = None, root
    for name in segments:
        parent = node
        if name not in node.children:
            node.children[name] = _field_node(node.model, name)
        node = node.children[name]
    name, path = segments[-1], element["path"]
    if element.get("min", 0) >= 1:
        parent.required.add(name)
        node.min_items = max(node.min_items, element["min"]) if node.is_array else 0
    if element.get("max") == "0":
        node.extra.append({"not": {}, "description": f"{path} is not allowed."})
    elif element.get("max") == "1" and node.is_array:
        node.max_items = 1
    binding = element.get("binding") or {}
    if binding.get("strength") == "required":
        node.extra.append(_binding_schema(node, binding["valueSet"], path))
    for key, value in element.items():
        if key.startswith("fixed"):
            node.extra.append({"const": value, "description": f"{path} is fixed to {json.dumps(value, ensure_ascii=False)}."})
        elif key.startswith("pattern"):
            node.extra.append(_pattern_schema(value, path))


def _emit(node: _Node) -> dict:
    item: dict = {}
    if node.children or node.required:
        item["type"] = "object"
        if node.required:
            item["required"] = sorted(node.required)
        if node.children:
            item["properties"] = {name: _emit(child) for name, child in sorted(node.children.items())}
    if node.extra:
        item = {"allOf": [item, *node.extra]} if item else (node.extra[0] if len(node.extra) == 1 else {"allOf": node.extra})
    if not node.is_array:
        return item
    array: dict = {"type": "array", "items": item}
    if node.min_items > 1:
        array["minItems"] = node.min_items
    if node.max_items is not None:
        array["maxItems"] = node.max_items
    return array


def compile_schema(sd: dict) -> dict:
    """The JSON Schema of a resource profile (its own differential merged over its ancestors')."""
    root = _Node(get_fhir_model_class(sd["type"]), sd["type"])
    for profile in _chain(sd):
        for element in profile["differential"]["element"]:
            _apply(root, element)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{CANONICAL_BASE}/schemas/{sd['id']}.schema.json",
        "title": sd["title"],
        "description": f"Compiled from StructureDefinition {sd['url']} by scripts/compile_profiles.py; do not edit.",
    }
    schema.update(_emit(root))
    return schema


def schema_path(sd: dict) -> Path:
    return SCHEMAS_DIR / f"{sd['id']}.schema.json"


def compiled_schemas() -> dict[Path, dict]:
    """Every resource profile's schema, as `scripts/compile_profiles.py` writes them."""
    return {schema_path(sd): compile_schema(sd) for sd in conformance_resources("StructureDefinition").values()
            if sd["kind"] == "resource"}


# ------------------------------------------------------------------ invariants
@dataclass(frozen=True)
class Invariant:
    key: str
    human: str
    path: str
    evaluate: object  # a compiled FHIRPath expression


@lru_cache(maxsize=None)
def invariants(profile_url: str) -> tuple[Invariant, ...]:
    sd = structure_definition(profile_url)
    out = []
    for profile in _chain(sd):
        for element in profile["differential"]["element"]:
            for c in element.get("constraint", []):
                if c.get("severity", "error") == "error" and c.get("expression"):
                    out.append(Invariant(c["key"], c["human"], element["path"],
                                         fhirpathpy.compile(c["expression"], fhirpath_models["r4"])))
    return tuple(out)


def _nodes(resource: dict, path: str):
    """(FHIRPath of each node, node) at an element path, arrays expanded: Patient.identifier[1]..."""
    segments = path.split(".")
    found = [(segments[0], resource)]
    for name in segments[1:]:
        step = []
        for where, node in found:
            value = node.get(name) if isinstance(node, dict) else None
            if isinstance(value, list):
                step += [(f"{where}.{name}[{i}]", v) for i, v in enumerate(value)]
            elif value is not None:
                step.append((f"{where}.{name}", value))
        found = step
    return found


def failed_invariants(profile_url: str, resource: dict) -> list[tuple[Invariant, str]]:
    """The invariants of the profile the resource breaks, each with the FHIRPath of the failing node."""
    failed = []
    for invariant in invariants(profile_url):
        for where, node in _nodes(resource, invariant.path):
            try:
                result = invariant.evaluate(node)
            except Exception:  # an expression that cannot run on this input fails closed
                result = [False]
            if result and result != [True]:
                failed.append((invariant, where))
    return failed
