"""The server's value sets (profiles/valuesets/*.json), for `:in` / `:not-in` and validation."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _value_sets() -> dict[str, dict]:
    from fhir_server.fhir.profiles import conformance_resources  # profiles/ files are read in one place

    return {vs["url"]: vs for vs in conformance_resources("ValueSet").values()}


def value_set(url: str) -> dict | None:
    return _value_sets().get(url.split("|")[0])


def value_set_codes(url: str) -> list[tuple[str, str]] | None:
    """(system, code) pairs of an enumerated value set, or None when the server does not know it."""
    vs = value_set(url)
    if vs is None:
        return None
    return [
        (include["system"], concept["code"])
        for include in vs.get("compose", {}).get("include", [])
        for concept in include.get("concept", [])
    ]


def all_value_sets() -> list[dict]:
    return list(_value_sets().values())
