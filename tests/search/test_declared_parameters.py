"""Every search parameter the CapabilityStatement declares works: a value taken from a fixture
resource finds it, and a value it does not have does not. Generated from the registry."""

from __future__ import annotations

import fhirpathpy
import pytest
from fhirpathpy.models import models

from fhir_server.search.extract import _Keys, EXTRACTORS, reference_target
from fhir_server.search.registry import load_registry
from tests.search.conftest import dataset, server_written

REGISTRY = load_registry()
FIXTURES = {}
for resource in dataset() + server_written():
    FIXTURES.setdefault(resource["resourceType"], []).append(resource)


def _search_value(param, resource):
    """A search value that matches `resource` for `param`, or None when it has no value."""
    if param.code == "_id":
        return resource["id"]
    if param.code == "_lastUpdated":
        return "gt2000-01-01"
    if param.type == "composite":
        return None
    values = fhirpathpy.evaluate(resource, param.expression, {}, models["r4"])
    for value in values:
        keys = _Keys()
        if not EXTRACTORS[param.type](keys, param.code, value):
            continue
        if param.type == "token" and keys.tk:
            key = next(k for k in keys.tk if "|*|" not in k and ":" not in k.split("|")[0])
            _, system, code = key.split("|", 2)
            return f"{system}|{code}" if system else code
        if param.type == "string" and keys.sx:
            return keys.sx[0].split("|", 1)[1][:3]
        if param.type == "reference" and keys.rf:
            return keys.rf[0].split("|", 1)[1]
        if param.type == "uri" and keys.ur:
            return keys.ur[0].split("|", 1)[1]
        if param.type == "date" and keys.dt:
            return "ap" + resource_date(value)
    return None


def resource_date(value):
    if isinstance(value, dict):
        return (value.get("start") or value.get("end"))[:10]
    return str(value)[:10]


NON_MATCHING = {
    "token": "urn:none|no-such-code",
    "string": "zzzzqq",
    "reference": "Patient/no-such-patient",
    "uri": "http://example.org/none",
    "date": "1800-01-01",
}


def declared():
    cases = []
    for resource_type, params in REGISTRY.by_type.items():
        for param in params.values():
            if param.type == "composite":
                continue
            cases.append((resource_type, param.code))
    return cases


@pytest.mark.parametrize("resource_type, code", declared(), ids=[f"{t}.{c}" for t, c in declared()])
def test_declared_parameter_works(search, resource_type, code):
    statement = search.get("/fhir/metadata").json
    listed = {
        p["name"]
        for r in statement["rest"][0]["resource"]
        if r["type"] == resource_type
        for p in r.get("searchParam", [])
    }
    assert code in listed, f"{resource_type}.{code} is in the registry but not declared"
    param = REGISTRY.get(resource_type, code)
    candidates = FIXTURES.get(resource_type, [])
    with_value = [(r, _search_value(param, r)) for r in candidates]
    with_value = [(r, v) for r, v in with_value if v is not None]
    if not with_value:
        # no fixture carries this element: the parameter still answers, and :missing=true finds them all
        response = search.get(f"/fhir/{resource_type}?{code}:missing=true&_count=1000")
        assert response.status_code == 200, response.json
        found = {e["resource"]["id"] for e in response.json.get("entry", []) if e["search"]["mode"] != "outcome"}
        assert {r["id"] for r in candidates} <= found
        return
    resource, value = with_value[0]
    response = search.client.get(f"/fhir/{resource_type}", query_string={code: value, "_count": "1000"})
    assert response.status_code == 200, (value, response.get_json())
    found = {e["resource"]["id"] for e in response.get_json().get("entry", []) if e["search"]["mode"] != "outcome"}
    assert resource["id"] in found, f"{resource_type}?{code}={value} did not find {resource['id']}"
    miss = search.client.get(f"/fhir/{resource_type}", query_string={code: NON_MATCHING.get(param.type, "x")})
    if code == "_id":
        miss = search.client.get(f"/fhir/{resource_type}", query_string={code: "no-such-id"})
    assert miss.status_code == 200, miss.get_json()
    assert resource["id"] not in {e["resource"]["id"] for e in miss.get_json().get("entry", []) if e["search"]["mode"] != "outcome"}
