"""What a search returns: sorting, paging, includes, _summary, _elements, _total, compartments."""

from __future__ import annotations

import pytest

from tests.conftest import make_document, make_patient


def ids(bundle, mode="match"):
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode]


def link(bundle, relation):
    return next((l["url"] for l in bundle["link"] if l["relation"] == relation), None)


def follow(client, url):
    return client.get(url.split("localhost", 1)[1]).json


@pytest.mark.parametrize(
    "query, expected",
    [
        ("DocumentReference?_sort=date", ["doc-bio", "doc-cr", "doc-img"]),
        ("DocumentReference?_sort=-date", ["doc-img", "doc-cr", "doc-bio"]),
        ("Patient?_sort=family", ["pat-zoe", "pat-helene", "pat-francois"]),
        ("Patient?_sort=-birthdate", ["pat-zoe", "pat-helene", "pat-francois"]),
        ("Patient?_sort=gender,-birthdate", ["pat-zoe", "pat-helene", "pat-francois"]),
        ("Patient?_sort=_id", ["pat-francois", "pat-helene", "pat-zoe"]),
        ("Patient?_sort=-_id", ["pat-zoe", "pat-helene", "pat-francois"]),
        ("DocumentReference?_sort=status,date", ["doc-bio", "doc-cr", "doc-img"]),
    ],
)
def test_sort(search, query, expected):
    assert ids(search.get(f"/fhir/{query}").json) == expected


def test_paging_visits_every_match_once_with_next_and_previous(search):
    first = search.get("/fhir/Patient?_sort=birthdate&_count=1").json
    assert first["total"] == 3 and ids(first) == ["pat-francois"]
    assert link(first, "first") and link(first, "next") and not link(first, "previous")
    second = follow(search, link(first, "next"))
    assert ids(second) == ["pat-helene"]
    third = follow(search, link(second, "next"))
    assert ids(third) == ["pat-zoe"] and link(third, "next") is None
    back = follow(search, link(third, "previous"))
    assert ids(back) == ["pat-helene"]
    assert ids(follow(search, link(back, "previous"))) == ["pat-francois"]


def test_count_is_capped_by_the_server_maximum(search, search_app):
    maximum = search_app.config["DMP_SETTINGS"].max_page_size
    bundle = search.get(f"/fhir/Patient?_count={maximum * 10}").json
    assert len(ids(bundle)) == 3


def test_paging_stays_correct_while_resources_are_written_between_pages(client):
    created = []
    for rank in range(1, 7):
        created.append(client.post("/fhir/Patient", json=make_patient(rank=f"{rank:03d}")).json["id"])
    page = client.get("/fhir/Patient?_sort=_lastUpdated&_count=2").json
    seen = ids(page)
    # a writer inserts new patients and updates one already seen while the client pages
    client.post("/fhir/Patient", json=make_patient(rank="050"))
    first_seen = client.get(f"/fhir/Patient/{seen[0]}").json
    while link(page, "next"):
        page = follow(client, link(page, "next"))
        seen += ids(page)
        client.post("/fhir/Patient", json=make_patient(rank=f"{len(seen) + 60:03d}"))
    client.put(f"/fhir/Patient/{first_seen['id']}", json=first_seen)
    assert len(seen) == len(set(seen)), "a resource was returned twice"
    assert set(created) <= set(seen), "a resource that existed before the search was skipped"


def test_include_and_revinclude_with_modes_and_no_duplicates(search):
    bundle = search.get(
        "/fhir/DocumentReference?patient=pat-helene&_include=DocumentReference:author&_include=DocumentReference:subject"
    ).json
    assert sorted(ids(bundle)) == ["doc-bio", "doc-cr"]
    included = ids(bundle, "include")
    assert sorted(included) == ["dr-durand", "dr-martin", "pat-helene"]
    assert len(included) == len(set(included))
    assert bundle["total"] == 2  # includes are not counted
    rev = search.get("/fhir/Patient?_id=pat-helene&_revinclude=DocumentReference:subject&_revinclude=Consent:patient").json
    assert sorted(ids(rev, "include")) == ["cons-1", "doc-bio", "doc-cr"]


def test_include_with_target_type_and_wildcard(search):
    typed = search.get("/fhir/PractitionerRole?_id=role-martin&_include=PractitionerRole:practitioner:Practitioner").json
    assert ids(typed, "include") == ["dr-martin"]
    star = search.get("/fhir/PractitionerRole?_id=role-martin&_include=*").json
    assert sorted(ids(star, "include")) == ["dr-martin", "org-chu"]


def test_include_iterate_follows_included_resources(search):
    plain = search.get("/fhir/List?_id=ss-1&_include=List:item&_include=DocumentReference:author").json
    assert sorted(ids(plain, "include")) == ["doc-bio", "doc-cr"]
    iterate = search.get("/fhir/List?_id=ss-1&_include=List:item&_include:iterate=DocumentReference:author").json
    assert sorted(ids(iterate, "include")) == ["doc-bio", "doc-cr", "dr-durand", "dr-martin"]
    rev_iterate = search.get(
        "/fhir/Practitioner?_id=dr-durand&_revinclude=PractitionerRole:practitioner&_include:iterate=PractitionerRole:organization"
    ).json
    assert sorted(ids(rev_iterate, "include")) == ["role-durand"]


def test_summary_count_total_and_elements(search):
    count = search.get("/fhir/Patient?_summary=count").json
    assert count["total"] == 3 and "entry" not in count
    no_total = search.get("/fhir/Patient?_total=none").json
    assert "total" not in no_total and len(ids(no_total)) == 3
    assert search.get("/fhir/Patient?_total=estimate").json["total"] == 3
    summary = search.get("/fhir/Patient?_id=pat-helene&_summary=true").json["entry"][0]["resource"]
    assert "name" in summary and "generalPractitioner" in summary or "name" in summary
    assert any(t["code"] == "SUBSETTED" for t in summary["meta"]["tag"])
    elements = search.get("/fhir/Patient?_id=pat-helene&_elements=birthDate").json["entry"][0]["resource"]
    assert set(elements) == {"resourceType", "id", "meta", "birthDate"}
    text = search.get("/fhir/Patient?_id=pat-helene&_summary=text").json["entry"][0]["resource"]
    assert "name" not in text
    data = search.get("/fhir/Patient?_id=pat-helene&_summary=data").json["entry"][0]["resource"]
    assert "name" in data and "text" not in data


def test_compartment_search(search):
    docs = search.get("/fhir/Patient/pat-helene/DocumentReference").json
    assert sorted(ids(docs)) == ["doc-bio", "doc-cr"]
    typed = search.get("/fhir/Patient/pat-helene/DocumentReference?type=11502-2").json
    assert ids(typed) == ["doc-bio"]
    everything_of_type = search.get("/fhir/Patient/pat-helene/*").json
    assert sorted(ids(everything_of_type)) == ["cons-1", "doc-bio", "doc-cr", "pat-helene", "ss-1"]
    assert search.get("/fhir/Patient/unknown/DocumentReference").status_code == 404


def test_patient_everything(search):
    bundle = search.get("/fhir/Patient/pat-helene/$everything").json
    assert sorted(ids(bundle)) == ["cons-1", "doc-bio", "doc-cr", "pat-helene", "ss-1"]
    included = set(ids(bundle, "include"))
    assert {"dr-martin", "dr-durand"} <= included
    assert "pat-francois" not in included and "doc-img" not in ids(bundle)
    typed = search.get("/fhir/Patient/pat-helene/$everything?_type=DocumentReference").json
    assert sorted(ids(typed)) == ["doc-bio", "doc-cr"]
    paged = search.get("/fhir/Patient/pat-helene/$everything?_count=2").json
    assert len(ids(paged)) == 2 and link(paged, "next")
    assert search.get("/fhir/Patient/pat-helene/$everything?foo=1").status_code == 400


def test_everything_includes_document_content(client):
    patient = client.post("/fhir/Patient", json=make_patient()).json
    binary = client.post("/fhir/Binary", data=b"CR texte", content_type="text/plain").json
    doc = make_document(f"Patient/{patient['id']}")
    doc["content"][0]["attachment"]["url"] = f"Binary/{binary['id']}"
    client.post("/fhir/DocumentReference", json=doc)
    bundle = client.get(f"/fhir/Patient/{patient['id']}/$everything").json
    assert binary["id"] in ids(bundle, "include")


def test_system_search_and_type_filter(search):
    bundle = search.get("/fhir/_search?_id=pat-zoe,dr-martin").json
    assert sorted(ids(bundle)) == ["dr-martin", "pat-zoe"]
    typed = search.get("/fhir/_search?_type=Practitioner&_id=pat-zoe,dr-martin").json
    assert ids(typed) == ["dr-martin"]
