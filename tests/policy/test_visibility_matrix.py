"""Who sees which document, on every read path. Generated from one table so no combination is forgotten."""

from __future__ import annotations

import pytest

from tests.policy.conftest import ACTORS, HELENE_DOCS

HELENE = set(HELENE_DOCS)
ALL_DOCS = HELENE | {"doc-zoe", "doc-zoe-rl", "doc-francois", "doc-paul"}

EXPECTED = {
    "helene": {"doc-cr", "doc-psy", "doc-masked", "doc-attest", "doc-upload"},  # INVISIBLE_PATIENT hidden
    "parent": {"doc-zoe"},  # INVISIBLE_REPRESENTANTS_LEGAUX hidden from the legal representative
    "dr-martin": {"doc-cr", "doc-psy", "doc-masked", "doc-invisible", "doc-upload"},  # GP: masked too; matrix: no ATTEST-RESID
    "dr-authorised": {"doc-cr", "doc-psy", "doc-invisible", "doc-upload"},  # permit; masked hidden; closed record hidden
    "nurse": {"doc-invisible"},  # conservative default: imaging report yes, consultation/psychiatry no
    "dentist": {"doc-cr", "doc-invisible", "doc-upload"},  # dentists: no psychiatric summary, no ATTEST-RESID
    "pharmacist": {"doc-invisible"},
    "dr-blocked": {"doc-zoe", "doc-zoe-rl"},  # blocked by Hélène, authorised by Zoé
    "dr-blocked-btg": {"doc-zoe", "doc-zoe-rl"},  # a block wins over break-the-glass
    "dr-other": set(),  # no authorisation, no GP right
    "dr-urgence": HELENE - {"doc-attest"} | {"doc-zoe", "doc-zoe-rl"},  # BTG: not Paul (objected), not the closed record
    "samu": HELENE - {"doc-attest"} | {"doc-zoe", "doc-zoe-rl"},  # Centre 15: Paul objected too
    "vendor": ALL_DOCS - {"doc-francois"},  # system client: everything but a closed record
}
assert set(EXPECTED) == set(ACTORS)


def ids(bundle, mode="match", rt="DocumentReference"):
    return {
        e["resource"]["id"] for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode and e["resource"]["resourceType"] == rt
    }


@pytest.fixture(params=sorted(ACTORS))
def actor(request, as_actor):
    return request.param, as_actor(request.param)


def test_search_with_accurate_total(actor):
    name, client = actor
    bundle = client.get("/fhir/DocumentReference?_total=accurate&_count=100").json
    assert ids(bundle) == EXPECTED[name]
    assert bundle["total"] == len(EXPECTED[name])


def test_summary_count_never_counts_hidden_documents(actor):
    name, client = actor
    assert client.get("/fhir/DocumentReference?_summary=count").json["total"] == len(EXPECTED[name])


def test_paging_and_sort_see_only_visible_documents(actor):
    name, client = actor
    seen = set()
    page = client.get("/fhir/DocumentReference?_count=2&_sort=-date").json
    while True:
        seen |= ids(page)
        nxt = next((l["url"] for l in page["link"] if l["relation"] == "next"), None)
        if not nxt:
            break
        page = client.get(nxt.split("localhost", 1)[1]).json
    assert seen == EXPECTED[name]


def test_read_vread_and_history(actor):
    name, client = actor
    for doc in sorted(ALL_DOCS):
        expected = 200 if doc in EXPECTED[name] else 404
        assert client.get(f"/fhir/DocumentReference/{doc}").status_code == expected, doc
        assert client.get(f"/fhir/DocumentReference/{doc}/_history/1").status_code == expected, doc
        assert client.get(f"/fhir/DocumentReference/{doc}/_history").status_code == expected, doc


def test_binary_only_through_a_visible_document(actor):
    name, client = actor
    for doc in sorted(ALL_DOCS):
        expected = 200 if doc in EXPECTED[name] else 404
        raw = client.get(f"/fhir/Binary/bin-{doc}", headers={"Accept": "text/plain"})
        assert raw.status_code == expected, doc
        if expected == 200:
            assert raw.data == f"contenu de {doc}".encode()


def test_revinclude_includes_only_visible_documents(actor):
    name, client = actor
    bundle = client.get("/fhir/Patient?_revinclude=DocumentReference:subject&_count=100").json
    assert ids(bundle, "include") == EXPECTED[name]


def test_chain_and_has_do_not_reveal_hidden_documents(actor):
    name, client = actor
    chained = client.get("/fhir/DocumentReference?patient.family=lefevre").json
    assert ids(chained) == EXPECTED[name] & HELENE
    has = client.get("/fhir/Patient?_has:DocumentReference:subject:type=68599-0").json
    assert ("helene" in ids(has, rt="Patient")) == ("doc-psy" in EXPECTED[name])


def test_everything_of_helene(actor):
    name, client = actor
    response = client.get("/fhir/Patient/helene/$everything?_count=100")
    if response.status_code == 404:
        assert not EXPECTED[name] & HELENE
        return
    assert response.status_code == 200, response.json
    assert ids(response.json) == EXPECTED[name] & HELENE


def test_batch_reads(actor):
    name, client = actor
    bundle = {
        "resourceType": "Bundle", "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"DocumentReference/{d}"}} for d in sorted(ALL_DOCS)],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    statuses = {d: e["response"]["status"] for d, e in zip(sorted(ALL_DOCS), response.json["entry"])}
    for doc, status in statuses.items():
        assert status.startswith("200" if doc in EXPECTED[name] else "404"), (doc, status)
