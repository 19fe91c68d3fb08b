"""The SMART scope model (v1 and v2 in one), pure unit tests."""

import pytest

from fhir_server.auth.scopes import ScopeError, ScopeSet, describe_scope


def test_v1_scopes_map_to_letters():
    s = ScopeSet.parse("patient/*.read user/Observation.write system/Patient.*")
    assert s.allows("DocumentReference", "r") and s.allows("DocumentReference", "s")
    assert not s.allows("DocumentReference", "c")
    assert s.allows("Observation", "c") and s.allows("Observation", "u") and s.allows("Observation", "d")
    assert not s.allows("Observation", "r") or s.context_level("Observation", "r") == "patient"
    assert all(s.allows("Patient", x) for x in "cruds")
    assert str(s) == "patient/*.read user/Observation.write system/Patient.*"


def test_v2_letters_and_order():
    s = ScopeSet.parse("patient/DocumentReference.rs user/*.cruds")
    assert s.allows("DocumentReference", "r") and s.allows("DocumentReference", "s")
    assert s.context_level("DocumentReference", "r") == "user"
    assert s.context_level("Binary", "d") == "user"
    bad = ScopeSet.parse("patient/Observation.sr patient/Observation.rr patient/Observation.x")
    assert bad.unknown == ("patient/Observation.sr", "patient/Observation.rr", "patient/Observation.x")
    assert not bad.allows("Observation", "r")
    with pytest.raises(ScopeError):
        ScopeSet.parse("patient/Observation.sr", strict=True)


def test_context_level_prefers_system_then_user():
    s = ScopeSet.parse("patient/Observation.rs user/Observation.r system/Observation.s")
    assert s.context_level("Observation", "r") == "user"
    assert s.context_level("Observation", "s") == "system"
    assert s.context_level("Observation", "c") is None
    assert s.context_level("Patient", "r") is None


def test_restrictions_or_of_ands():
    s = ScopeSet.parse(
        "patient/Observation.rs?category=laboratory "
        "patient/Observation.rs?category=vital-signs&code=http://loinc.org|85354-9 "
        "patient/Condition.rs"
    )
    assert s.restrictions("Condition", "r") is None
    assert s.restrictions("Observation", "r") == [
        [("category", "laboratory")],
        [("category", "vital-signs"), ("code", "http://loinc.org|85354-9")],
    ]
    assert s.restrictions("Observation", "c") == []  # nothing grants it
    # one unrestricted scope lifts the restriction
    assert (
        ScopeSet.parse("patient/Observation.rs?category=laboratory patient/*.rs").restrictions(
            "Observation", "s"
        )
        is None
    )
    # per level
    mixed = ScopeSet.parse("user/Observation.rs?category=laboratory patient/Observation.rs")
    assert mixed.restrictions("Observation", "r", level="user") == [[("category", "laboratory")]]
    assert mixed.restrictions("Observation", "r", level="patient") is None


def test_v1_takes_no_parameters():
    s = ScopeSet.parse("patient/Observation.read?category=laboratory")
    assert s.unknown and not s.allows("Observation", "r")


def test_simple_scopes_and_canonical_string():
    s = ScopeSet.parse("openid  fhirUser launch launch/patient offline_access online_access openid")
    assert s.has("openid") and s.has("launch/patient") and s.has("online_access")
    assert str(s) == "openid fhirUser launch launch/patient offline_access online_access"
    assert "openid" in s and "patient/*.rs" not in s
    assert ScopeSet.parse(str(s)) == s
    assert ScopeSet.parse("patient/Observation.rs?code=b&category=a").resource_scopes[0].restriction == (
        ("category", "a"),
        ("code", "b"),
    )


def test_covers_is_semantic_not_textual():
    granted = ScopeSet.parse("patient/*.rs openid offline_access")
    assert granted.covers(ScopeSet.parse("patient/Observation.rs"))
    assert granted.covers(ScopeSet.parse("patient/Observation.r openid"))
    assert granted.covers(ScopeSet.parse("patient/*.read"))
    assert not granted.covers(ScopeSet.parse("patient/Observation.cruds"))
    assert not granted.covers(ScopeSet.parse("user/Observation.rs"))
    assert not granted.covers(ScopeSet.parse("fhirUser"))
    restricted = ScopeSet.parse("patient/Observation.rs?category=laboratory")
    assert restricted.covers(ScopeSet.parse("patient/Observation.r?category=laboratory&code=x"))
    assert not restricted.covers(ScopeSet.parse("patient/Observation.r"))
    assert granted.uncovered(ScopeSet.parse("patient/Observation.rs user/*.rs")) == ["user/*.rs"]


def test_plain_words_in_both_languages():
    assert "lire" in describe_scope("patient/Observation.rs", "fr").lower()
    assert "read" in describe_scope("patient/Observation.rs", "en").lower()
    assert "connecté" in describe_scope("offline_access", "fr")
