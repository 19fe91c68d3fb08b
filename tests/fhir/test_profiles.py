"""The DMP StructureDefinitions compile to the committed JSON Schemas, and their invariants run."""

from __future__ import annotations

import json

from fhir_server.fhir import profiles
from fhir_server.fhir.nir import make_nir
from fhir_server.fhir.validation import issues_for
from tests.conftest import make_patient


def test_committed_schemas_are_compiled_from_the_current_profiles():
    compiled = profiles.compiled_schemas()
    assert compiled, "no resource profile shipped"
    for path, schema in compiled.items():
        assert path.exists(), f"{path.name} missing: run scripts/compile_profiles.py"
        assert json.loads(path.read_text(encoding="utf-8")) == schema, f"{path.name} is stale: run scripts/compile_profiles.py"
    assert set(profiles.SCHEMAS_DIR.glob("*.schema.json")) == set(compiled)


def test_the_ins_nir_key_invariant_runs_on_each_identifier():
    good = make_patient()
    assert issues_for(good) == []
    corsican = make_patient(dept="2B")
    assert issues_for(corsican) == []
    bad = make_patient()
    nir = bad["identifier"][0]["value"]
    bad["identifier"].insert(0, {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "not an INS"})
    bad["identifier"][1]["value"] = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
    issues = issues_for(bad)
    assert [(i.expression, i.diagnostics.split(":")[0]) for i in issues] == [(["Patient.identifier[1]"], "dmp-pat-2")]
    assert make_nir(1, 99, 12, "75", "056", "123")  # the generator and the invariant share the key rule


def test_required_bindings_compile_to_value_set_checks():
    schema = json.loads((profiles.SCHEMAS_DIR / "dmp-documentreference.schema.json").read_text(encoding="utf-8"))
    status = schema["properties"]["status"]
    assert status["enum"] == ["current", "superseded"]
    assert "JDV_J66" in schema["properties"]["type"]["description"]
