"""The authorisation matrix (profession x document type), loaded from data at start-up."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MATRIX = Path(__file__).resolve().parent.parent.parent / "profiles" / "authorisation-matrix.json"


@dataclass(frozen=True)
class TypeRule:
    rule: str  # "all-except" | "only"
    types: frozenset[str]


class AuthorisationMatrix:
    def __init__(self, data: dict):
        self.profession_system = data.get("professionSystem")
        self.rows = {code: TypeRule(row["rule"], frozenset(row["types"])) for code, row in data["professions"].items()}
        self.default = TypeRule(data["default"]["rule"], frozenset(data["default"]["types"]))
        for rule in [*self.rows.values(), self.default]:
            if rule.rule not in ("all-except", "only"):
                raise ValueError(f"authorisation matrix: unknown rule {rule.rule!r}")

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "AuthorisationMatrix":
        path = path or os.environ.get("DMP_AUTHORISATION_MATRIX") or DEFAULT_MATRIX
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    def rule_for(self, professions: tuple[tuple[str, str], ...]) -> TypeRule:
        """The most permissive row among the caller's professions (an unknown profession: the default)."""
        codes = [code for system, code in professions if system == self.profession_system or system is None]
        rules = [self.rows[c] for c in codes if c in self.rows]
        if not rules:
            return self.default
        all_except = [r for r in rules if r.rule == "all-except"]
        if all_except:
            return TypeRule("all-except", frozenset.intersection(*[r.types for r in all_except]))
        return TypeRule("only", frozenset.union(*[r.types for r in rules]))
