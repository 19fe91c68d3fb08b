"""The server's value sets (profiles/valuesets/*.json), for `:in` / `:not-in` and validation."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

VALUESETS_DIR = Path(__file__).resolve().parent.parent.parent / "profiles" / "valuesets"


@lru_cache(maxsize=None)
def _value_sets() -> dict[str, dict]:
    sets = {}
    for path in sorted(VALUESETS_DIR.glob("*.json")):
        value_set = json.loads(path.read_text(encoding="utf-8"))
        sets[value_set["url"]] = value_set
    return sets


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
