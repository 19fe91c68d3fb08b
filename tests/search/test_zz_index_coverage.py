"""Runs after the rest of tests/search: every query the suite made is served by declared indexes."""

from __future__ import annotations

from tests.search import index_coverage


def test_the_policy_queries_run_under_the_recorder_too(search_app):
    """The access policy's own queries (one per request) must be index-backed as well."""
    from fhir_server.auth.principal import Principal
    from fhir_server.auth.scopes import ScopeSet

    policy = search_app.extensions["dmp"].policy
    for kind, user, purposes in [("practitioner", "Practitioner/dr-martin", ("BTG",)), ("patient", "Patient/pat-helene", ())]:
        principal = Principal(kind, user, user.split("/")[1] if kind == "patient" else None,
                              ScopeSet.parse("user/*.rs patient/*.rs"), "coverage", purpose_of_use=purposes)
        access = policy.for_principal(principal)
        for rt in ("DocumentReference", "Binary", "Patient", "Consent"):
            access.read_filter(rt)
    assert index_coverage.RECORDED


def test_every_query_of_the_suite_is_covered_by_a_declared_index(search_app):
    indexes = index_coverage.declared_indexes(search_app.extensions["dmp"].repository.db)
    assert index_coverage.RECORDED, "no query was recorded: the recorder is not installed"
    failures = {}
    for query, sort in index_coverage.RECORDED:
        found = index_coverage.problems(query, sort, indexes)
        if found:
            failures[repr((query, sort))[:300]] = found
    assert not failures, "\n".join(f"{q}: {p}" for q, p in list(failures.items())[:20])


def test_the_checker_rejects_an_unindexed_query(search_app):
    indexes = index_coverage.declared_indexes(search_app.extensions["dmp"].repository.db)
    assert index_coverage.problems({"rt": "Patient", "res.gender": "male"}, None, indexes)
    assert index_coverage.problems({"rt": "Patient", "state": "live"}, [("sk.phonetic", 1), ("_id", 1)], indexes)
    assert not index_coverage.problems({"rt": "Patient", "state": "live", "ix.tk": "gender|*|male"}, None, indexes)
