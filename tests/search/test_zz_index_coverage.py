"""Runs after the rest of tests/search: every query the suite made is served by declared indexes."""

from __future__ import annotations

from tests.search import index_coverage


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
