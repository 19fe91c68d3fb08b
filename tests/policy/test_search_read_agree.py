"""Property: for random consents, labels and actors, a search never returns or counts a document that
a direct read by the same actor refuses, and every document the actor can read is found by search."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.policy.conftest import ACTORS, consent, document

LABELS = ["MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"]
PATIENTS = ["helene", "zoe", "paul", "francois"]
PRACTITIONERS = [a for a, spec in ACTORS.items() if spec[0] == "practitioner"]
TYPES = ["11488-4", "68599-0", "11502-2", "18748-4", "60591-5"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    actor=st.sampled_from(sorted(ACTORS)),
    patient=st.sampled_from(PATIENTS),
    labels=st.lists(st.sampled_from(LABELS), unique=True, max_size=2),
    type_code=st.sampled_from(TYPES),
    consent_kind=st.sampled_from([None, "permit", "deny"]),
    consent_actor=st.sampled_from(PRACTITIONERS),
)
def test_search_and_read_agree(dmp_app, as_actor, actor, patient, labels, type_code, consent_kind, consent_actor):
    repository = dmp_app.extensions["dmp"].repository
    doc = document("prop-doc", patient, "Practitioner/dr-author", type_code, tuple(labels))
    repository.update("DocumentReference", "prop-doc", doc)
    if consent_kind:
        fhir_user = ACTORS[consent_actor][1]
        repository.update("Consent", "prop-consent", consent("prop-consent", patient, consent_kind, fhir_user))
    try:
        client = as_actor(actor)
        bundle = client.get("/fhir/DocumentReference?_count=200&_total=accurate").json
        found = {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] != "outcome"}
        assert bundle["total"] == len(found)
        candidates = {d["rid"] for d in repository.find_docs({"rt": "DocumentReference", "state": "live"}, {"rid": 1})}
        readable = {d for d in candidates if client.get(f"/fhir/DocumentReference/{d}").status_code == 200}
        assert found == readable
        count = client.get("/fhir/DocumentReference?_summary=count").json["total"]
        assert count == len(readable)
    finally:
        repository.delete("DocumentReference", "prop-doc")
        if consent_kind:
            repository.delete("Consent", "prop-consent")
