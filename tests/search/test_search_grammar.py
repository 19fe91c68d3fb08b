"""The R4 search grammar, table-driven over the fixed data set of tests/search/conftest.py."""

from __future__ import annotations

import pytest

from fhir_server.fhir.nir import make_nir
from tests.search.conftest import TRE_A07, TRE_G15

HELENE_NIR = make_nir(2, 80, 1, "75", "056", "001")
FRANCOIS_NIR = make_nir(1, 75, 6, "2A", "056", "002")
INS = "urn:oid:1.2.250.1.213.1.4.8"

CASES = [
    # string: prefix, accents folded, case-insensitive, :exact, :contains, name parts, address
    ("Patient", "family=lefevre", {"pat-helene"}),
    ("Patient", "family=LEF", {"pat-helene"}),
    ("Patient", "family=Lefèvre", {"pat-helene"}),
    ("Patient", "family:exact=Lefèvre", {"pat-helene"}),
    ("Patient", "family:exact=lefevre", set()),
    ("Patient", "family:contains=oe", {"pat-francois"}),
    ("Patient", "given=helene", {"pat-helene"}),
    ("Patient", "name=fran", {"pat-francois"}),
    ("Patient", "address=12 rue", {"pat-helene"}),
    ("Patient", "address=paris", {"pat-helene"}),
    ("Patient", "address=roquette", set()),
    ("Patient", "address:contains=roquette", {"pat-helene"}),
    ("Patient", "address-city=ajaccio", {"pat-francois"}),
    ("Patient", "address-postalcode=75", {"pat-helene"}),
    ("Organization", "name=chu", {"org-chu"}),
    # token: system|code, code, |code, system|, :not, :text, :of-type, boolean, comma = OR
    ("Patient", f"identifier={INS}|{HELENE_NIR}", {"pat-helene"}),
    ("Patient", f"identifier={HELENE_NIR}", {"pat-helene"}),
    ("Patient", f"identifier=urn:oid:1.2.250.1.213.1.4.9|{HELENE_NIR}", set()),
    ("Patient", f"identifier={INS}|", {"pat-helene", "pat-francois", "pat-zoe"}),
    ("Patient", "gender=female", {"pat-helene", "pat-zoe"}),
    ("Patient", "gender:not=female", {"pat-francois"}),
    ("Patient", "gender=male,female", {"pat-helene", "pat-francois", "pat-zoe"}),
    ("Patient", "active=true", {"pat-helene"}),
    ("Patient", "active=false", {"pat-francois"}),
    ("Patient", "email=helene.lefevre@example.fr", {"pat-helene"}),
    ("Practitioner", "identifier=https://rpps.esante.gouv.fr|10003456789", {"dr-martin"}),
    (
        "Practitioner",
        "identifier:of-type=https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203|RPPS|10003456789",
        {"dr-martin"},
    ),
    ("PractitionerRole", f"role={TRE_G15}|10", {"role-martin"}),
    ("PractitionerRole", "role:text=infirm", {"role-durand"}),
    ("PractitionerRole", "specialty=SM54", {"role-martin"}),
    ("DocumentReference", "type=http://loinc.org|11488-4", {"doc-cr"}),
    ("DocumentReference", "type=11488-4,11502-2", {"doc-cr", "doc-bio"}),
    ("DocumentReference", "status=current", {"doc-cr", "doc-bio"}),
    ("DocumentReference", "status:not=current", {"doc-img"}),
    ("DocumentReference", f"security-label={TRE_A07}|MASQUE_PS", {"doc-bio"}),
    ("DocumentReference", "relation=replaces", {"doc-img"}),
    ("Consent", "scope=patient-privacy", {"cons-1"}),
    ("Consent", "purpose=http://terminology.hl7.org/CodeSystem/v3-ActReason|TREAT", {"cons-1"}),
    ("RelatedPerson", "relationship=GUARD", {"rp-parent"}),
    # date: every prefix, partial dates, periods
    ("Patient", "birthdate=1980", {"pat-helene"}),
    ("Patient", "birthdate=1980-01", {"pat-helene"}),
    ("Patient", "birthdate=1980-01-15", {"pat-helene"}),
    ("Patient", "birthdate=eq1980-01-16", set()),
    ("Patient", "birthdate=ne1980-01-15", {"pat-francois", "pat-zoe"}),
    ("Patient", "birthdate=gt1980", {"pat-zoe"}),
    ("Patient", "birthdate=ge1980", {"pat-helene", "pat-zoe"}),
    ("Patient", "birthdate=lt1980-01-15", {"pat-francois"}),
    ("Patient", "birthdate=le1980-01-15", {"pat-helene", "pat-francois"}),
    ("Patient", "birthdate=sa1979", {"pat-helene", "pat-zoe"}),
    ("Patient", "birthdate=eb1980", {"pat-francois"}),
    ("Patient", "birthdate=ap2015-02-10", {"pat-zoe"}),
    ("Patient", "birthdate=ge1970&birthdate=lt1980", {"pat-francois"}),
    ("Patient", "death-date=2020", {"pat-francois"}),
    ("DocumentReference", "date=ge2024-01-01", {"doc-cr", "doc-img"}),
    ("DocumentReference", "date=2024-03-15T09:00:00Z", {"doc-cr"}),
    ("DocumentReference", "date=lt2024-03-15T09:00:00Z", {"doc-bio"}),
    ("DocumentReference", "period=2024-03", set()),  # an open-ended period is not *within* March
    ("DocumentReference", "period=ge2024-03", {"doc-cr", "doc-img", "doc-bio"}),  # open ends overlap
    ("DocumentReference", "period=lt2024-01", {"doc-bio"}),
    ("DocumentReference", "period-start=2024-03", {"doc-cr"}),
    ("DocumentReference", "creation=2023", {"doc-bio"}),
    ("Consent", "period=2024-06-01", set()),
    ("Consent", "period=ap2024-06-01", {"cons-1"}),
    ("Consent", "period=le2024-06-01", {"cons-1"}),
    ("List", "date=2024-03-15", {"ss-1"}),
    # reference: Type/id, bare id, absolute URL, :Type, :identifier
    ("DocumentReference", "subject=Patient/pat-helene", {"doc-cr", "doc-bio"}),
    ("DocumentReference", "patient=pat-helene", {"doc-cr", "doc-bio"}),
    ("DocumentReference", "subject=http://localhost/fhir/Patient/pat-francois", {"doc-img"}),
    ("DocumentReference", "subject:Patient=pat-francois", {"doc-img"}),
    ("DocumentReference", "author=Practitioner/dr-martin", {"doc-cr", "doc-img"}),
    ("DocumentReference", "relatesto=DocumentReference/doc-cr", {"doc-img"}),
    ("List", "item=DocumentReference/doc-bio", {"ss-1"}),
    ("Patient", "general-practitioner=dr-martin", {"pat-helene"}),
    # chains, several levels, reverse chains
    ("DocumentReference", f"patient.identifier={INS}|{HELENE_NIR}", {"doc-cr", "doc-bio"}),
    ("DocumentReference", f"subject:Patient.identifier={FRANCOIS_NIR}", {"doc-img"}),
    ("DocumentReference", "author:Practitioner.family=durand", {"doc-bio"}),
    ("DocumentReference", "author.name=martin", {"doc-cr", "doc-img"}),
    ("DocumentReference", "patient.general-practitioner.family=martin", {"doc-cr", "doc-bio"}),
    ("Patient", "_has:DocumentReference:patient:type=18748-4", {"pat-francois"}),
    ("Practitioner", "_has:PractitionerRole:practitioner:role=60", {"dr-durand"}),
    ("Patient", "_has:DocumentReference:subject:author.family=durand", {"pat-helene"}),
    # :missing, _id, _tag, _profile (uri :below), composite
    ("Patient", "address:missing=true", {"pat-zoe"}),
    ("Patient", "address:missing=false", {"pat-helene", "pat-francois"}),
    ("Patient", "death-date:missing=false", {"pat-francois"}),
    ("Patient", "_id=pat-zoe,pat-helene", {"pat-zoe", "pat-helene"}),
    ("Patient", "_tag=urn:dmp:test|minor", {"pat-zoe"}),
    ("Patient", "_profile=https://example.org/fhir/StructureDefinition/dmp-patient", {"pat-zoe"}),
    ("Patient", "_profile:below=https://example.org/fhir", {"pat-zoe"}),
    ("DocumentReference", "relationship=DocumentReference/doc-cr$replaces", {"doc-img"}),
    ("DocumentReference", "relationship=DocumentReference/doc-cr$appends", set()),
    ("Patient", "_lastUpdated=gt2000-01-01", {"pat-helene", "pat-francois", "pat-zoe"}),
    ("Patient", "_lastUpdated=lt2000-01-01", set()),
]


def ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"}


@pytest.mark.parametrize("resource_type, query, expected", CASES, ids=[f"{c[0]}?{c[1]}" for c in CASES])
def test_search(search, resource_type, query, expected):
    response = search.get(f"/fhir/{resource_type}?{query}")
    assert response.status_code == 200, response.json
    bundle = response.json
    assert ids(bundle) == expected
    assert bundle["total"] == len(expected)


@pytest.mark.parametrize("resource_type, query, expected", CASES[:20], ids=[f"{c[0]}?{c[1]}" for c in CASES[:20]])
def test_post_search_matches_get(search, resource_type, query, expected):
    response = search.client.post(
        f"/fhir/{resource_type}/_search", data=query.encode(), content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert ids(response.get_json()) == expected


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("Patient?birthdate=1980-13", "birthdate"),
        ("Patient?birthdate=xx1980", "birthdate"),
        ("Patient?_count=abc", "_count"),
        ("Patient?_sort=unknownparam", "_sort"),
        ("Patient?gender:exact=male", "gender:exact"),
        ("Patient?address:missing=maybe", "address:missing"),
        ("DocumentReference?subject=Patient/1/2/3", "subject"),
        ("Patient?_summary=everything", "_summary"),
        ("Patient?_include=Patient", "_include"),
    ],
)
def test_malformed_values_are_400_naming_the_parameter(search, query, parameter):
    response = search.get(f"/fhir/{query}")
    assert response.status_code == 400, response.json
    issue = response.json["issue"][0]
    assert parameter in issue["expression"] or parameter in issue["diagnostics"]


def test_unknown_parameters_are_ignored_when_lenient_and_rejected_when_strict(search):
    lenient = search.get("/fhir/Patient?foo=bar&gender=male")
    assert lenient.status_code == 200 and ids(lenient.json) == {"pat-francois"}
    assert any(l["relation"] == "self" and "foo=bar" in l["url"] for l in lenient.json["link"])
    strict = search.get("/fhir/Patient?foo=bar", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400 and "foo" in strict.json["issue"][0]["diagnostics"]


def test_searchset_entries_have_full_url_and_mode(search):
    bundle = search.get("/fhir/Patient?gender=male").json
    assert bundle["type"] == "searchset"
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == "http://localhost/fhir/Patient/pat-francois"
    assert entry["search"] == {"mode": "match"}


J66 = "https://mos.esante.gouv.fr/NOS/JDV_J66-TypeCode-DMP/FHIR/JDV-J66-TypeCode-DMP"


@pytest.mark.parametrize(
    "query, expected",
    [
        (f"type:in={J66}", {"doc-cr", "doc-bio", "doc-img"}),
        (f"type:not-in={J66}", set()),
        ("security-label:in=https://mos.esante.gouv.fr/NOS/JDV_J58-ConfidentialityCode-DMP/FHIR/JDV-J58-ConfidentialityCode-DMP", {"doc-cr", "doc-bio", "doc-img"}),
    ],
)
def test_token_in_and_not_in_use_the_servers_value_sets(search, query, expected):
    assert ids(search.get(f"/fhir/DocumentReference?{query}").json) == expected


def test_unknown_value_set_is_400(search):
    response = search.get("/fhir/DocumentReference?type:in=http://example.org/ValueSet/unknown")
    assert response.status_code == 400
