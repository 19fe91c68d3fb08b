"""SMART on FHIR scopes, v1 and v2 in one model.

A resource scope is ``<level>/<type>.<permissions>[?param=value&...]``:

* level: ``patient`` | ``user`` | ``system``
* type: a FHIR resource type or ``*``
* permissions: v1 ``read`` (= ``rs``), ``write`` (= ``cud``), ``*`` (= ``cruds``),
  or v2 letters, a non-empty subsequence of ``cruds`` in that order (``rs``, ``cud``, ``cruds``...)
* ``?param=value`` restrictions only on v2 scopes (SMART 2.x, "finer-grained resource constraints").

Other scopes this server knows: ``openid``, ``fhirUser``, ``profile``, ``launch``, ``launch/patient``,
``launch/encounter``, ``offline_access``, ``online_access``. Anything else is kept as text
(so that ``str()`` round-trips) but grants nothing.

Never compare scope strings with ``in`` on a space-separated string: that is how ``patient/*.r``
ends up matching ``patient/*.rs``; everything here goes through the parsed model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

LEVELS = ("patient", "user", "system")
LEVEL_RANK = {"patient": 1, "user": 2, "system": 3}
INTERACTIONS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
KNOWN_SIMPLE = {
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
}

_RESOURCE_RE = re.compile(
    r"^(?P<level>patient|user|system)/(?P<rt>\*|[A-Z][A-Za-z]{1,63})\.(?P<perm>read|write|\*|[cruds]{1,5})"
    r"(?:\?(?P<query>[^\s]+))?$"
)


class ScopeError(ValueError):
    """A scope string that does not parse (strict mode)."""


@dataclass(frozen=True)
class ResourceScope:
    level: str
    resource_type: str  # "*" for every type
    interactions: frozenset[str]
    restriction: tuple[tuple[str, str], ...] = ()  # AND of (param, value); () = unrestricted
    v1: bool = False
    text: str = ""

    def matches(self, resource_type: str, interaction: str) -> bool:
        return interaction in self.interactions and self.resource_type in ("*", resource_type)

    def covers(self, other: ResourceScope) -> bool:
        """True when every access `other` grants is also granted by self."""
        if self.level != other.level:
            return False
        if self.resource_type != "*" and self.resource_type != other.resource_type:
            return False
        if not other.interactions <= self.interactions:
            return False
        # self restricted to A requires other restricted to a superset of A
        return set(self.restriction) <= set(other.restriction)

    def canonical(self) -> str:
        if self.v1:
            return self.text
        letters = "".join(c for c in INTERACTIONS if c in self.interactions)
        out = f"{self.level}/{self.resource_type}.{letters}"
        if self.restriction:
            out += "?" + urlencode(list(self.restriction))
        return out

    def describe(self, lang: str = "fr") -> str:
        return describe_resource_scope(self, lang)


def parse_resource_scope(token: str) -> ResourceScope | None:
    m = _RESOURCE_RE.match(token)
    if not m:
        return None
    perm = m.group("perm")
    v1 = perm in V1_PERMISSIONS
    if v1:
        letters = V1_PERMISSIONS[perm]
    else:
        # v2: letters in cruds order, each at most once
        positions = [INTERACTIONS.index(c) for c in perm]
        if positions != sorted(set(positions)):
            return None
        letters = perm
    restriction: tuple[tuple[str, str], ...] = ()
    if m.group("query"):
        if v1:
            return None  # v1 scopes take no parameters
        pairs = parse_qsl(m.group("query"), keep_blank_values=False, strict_parsing=False)
        if not pairs:
            return None
        restriction = tuple(sorted(set(pairs)))
    return ResourceScope(m.group("level"), m.group("rt"), frozenset(letters), restriction, v1, token)


class ScopeSet:
    """An immutable, parsed set of scopes."""

    __slots__ = ("_resources", "_simple", "_tokens", "_unknown")

    def __init__(self, tokens: list[str]):
        seen: list[str] = []
        resources: list[ResourceScope] = []
        simple: set[str] = set()
        unknown: list[str] = []
        for tok in tokens:
            if not tok or tok in seen:
                continue
            rs = parse_resource_scope(tok)
            if rs is not None:
                resources.append(rs)
                seen.append(rs.canonical())
            elif tok in KNOWN_SIMPLE:
                simple.add(tok)
                seen.append(tok)
            else:
                unknown.append(tok)
                seen.append(tok)
        self._tokens = tuple(dict.fromkeys(seen))
        self._resources = tuple(resources)
        self._simple = frozenset(simple)
        self._unknown = tuple(unknown)

    # ------------------------------------------------------------ construction
    @classmethod
    def parse(cls, scope_string: str | None, strict: bool = False) -> ScopeSet:
        tokens = (scope_string or "").split()
        scopes = cls(tokens)
        if strict and scopes._unknown:
            raise ScopeError(f"Unknown or malformed scope(s): {' '.join(scopes._unknown)}")
        return scopes

    @classmethod
    def empty(cls) -> ScopeSet:
        return cls([])

    # ------------------------------------------------------------ queries
    def allows(self, resource_type: str, interaction: str) -> bool:
        return any(rs.matches(resource_type, interaction) for rs in self._resources)

    def context_level(self, resource_type: str, interaction: str) -> str | None:
        best = None
        for rs in self._resources:
            if rs.matches(resource_type, interaction) and (
                best is None or LEVEL_RANK[rs.level] > LEVEL_RANK[best]
            ):
                best = rs.level
        return best

    def restrictions(
        self, resource_type: str, interaction: str, level: str | None = None
    ) -> list[list[tuple[str, str]]] | None:
        """None: unrestricted. Else an OR-list of AND-lists of (param, value).

        An empty list means that no scope grants the interaction at all (check `allows` first).
        With `level`, only the scopes of that level count (e.g. the one `context_level` chose).
        """
        out: list[list[tuple[str, str]]] = []
        for rs in self._resources:
            if level is not None and rs.level != level:
                continue
            if rs.matches(resource_type, interaction):
                if not rs.restriction:
                    return None
                out.append(list(rs.restriction))
        return out

    def has(self, scope: str) -> bool:
        return scope in self._simple

    def __contains__(self, scope: str) -> bool:
        return scope in self._tokens

    def __iter__(self):
        return iter(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, ScopeSet) and set(self._tokens) == set(other._tokens)

    def __hash__(self) -> int:
        return hash(frozenset(self._tokens))

    def __repr__(self) -> str:
        return f"ScopeSet({str(self)!r})"

    def __str__(self) -> str:
        return " ".join(self._tokens)

    @property
    def resource_scopes(self) -> tuple[ResourceScope, ...]:
        return self._resources

    @property
    def simple(self) -> frozenset[str]:
        return self._simple

    @property
    def unknown(self) -> tuple[str, ...]:
        return self._unknown

    def levels(self) -> set[str]:
        return {rs.level for rs in self._resources}

    def uses_v1(self) -> bool:
        return any(rs.v1 for rs in self._resources)

    def uses_v2(self) -> bool:
        return any(not rs.v1 for rs in self._resources)

    # ------------------------------------------------------------ algebra
    def covers_scope(self, token: str) -> bool:
        rs = parse_resource_scope(token)
        if rs is None:
            return token in self._tokens
        return any(mine.covers(rs) for mine in self._resources)

    def covers(self, other: ScopeSet) -> bool:
        """Every scope of `other` is granted by self (semantic subset)."""
        return all(self.covers_scope(tok) for tok in other)

    def uncovered(self, other: ScopeSet) -> list[str]:
        return [tok for tok in other if not self.covers_scope(tok)]

    def only(self, tokens) -> ScopeSet:
        """The subset of self made of the given tokens (in self's order)."""
        wanted = set(tokens)
        return ScopeSet([t for t in self._tokens if t in wanted])

    def without_levels(self, *levels: str) -> ScopeSet:
        keep = []
        for tok in self._tokens:
            rs = parse_resource_scope(tok)
            if rs is None or rs.level not in levels:
                keep.append(tok)
        return ScopeSet(keep)

    def union(self, other: ScopeSet) -> ScopeSet:
        return ScopeSet(list(self._tokens) + list(other._tokens))


# ------------------------------------------------------------------ plain words (consent screen)
_VERBS = {
    "fr": {"c": "créer", "r": "lire", "u": "modifier", "d": "supprimer", "s": "rechercher"},
    "en": {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"},
}
_LEVEL_WORDS = {
    "fr": {
        "patient": "dans le dossier du patient choisi",
        "user": "tout ce à quoi vous avez accès",
        "system": "tous les dossiers (accès système)",
    },
    "en": {
        "patient": "in the selected patient's record",
        "user": "everything you can access",
        "system": "every record (system access)",
    },
}
_TYPE_WORDS = {
    "fr": {
        "*": "toutes les données",
        "DocumentReference": "les documents",
        "Observation": "les résultats et mesures",
        "Patient": "l'identité du patient",
        "Condition": "les problèmes de santé",
        "MedicationRequest": "les prescriptions",
        "AllergyIntolerance": "les allergies",
        "Immunization": "les vaccinations",
        "Binary": "le contenu des documents",
    },
    "en": {
        "*": "all data",
        "DocumentReference": "documents",
        "Observation": "results and measurements",
        "Patient": "the patient's identity",
        "Condition": "health problems",
        "MedicationRequest": "prescriptions",
        "AllergyIntolerance": "allergies",
        "Immunization": "immunizations",
        "Binary": "document content",
    },
}
_SIMPLE_WORDS = {
    "fr": {
        "openid": "Vous identifier auprès de l'application",
        "fhirUser": "Communiquer à l'application votre fiche (patient ou professionnel)",
        "profile": "Communiquer votre profil",
        "launch": "Reprendre le contexte du logiciel qui a lancé l'application",
        "launch/patient": "Choisir le patient dont le dossier est ouvert",
        "launch/encounter": "Choisir la rencontre en cours",
        "offline_access": "Rester connecté même quand vous n'utilisez pas l'application",
        "online_access": "Rester connecté tant que vous utilisez l'application",
    },
    "en": {
        "openid": "Identify you to the app",
        "fhirUser": "Tell the app who you are (patient or professional record)",
        "profile": "Share your profile",
        "launch": "Reuse the context of the software that launched the app",
        "launch/patient": "Pick the patient whose record is open",
        "launch/encounter": "Pick the current encounter",
        "offline_access": "Stay signed in even when you are not using the app",
        "online_access": "Stay signed in while you use the app",
    },
}


def describe_resource_scope(rs: ResourceScope, lang: str = "fr") -> str:
    lang = lang if lang in _VERBS else "en"
    verbs = [_VERBS[lang][c] for c in INTERACTIONS if c in rs.interactions]
    what = _TYPE_WORDS[lang].get(rs.resource_type, rs.resource_type)
    joiner = " et " if lang == "fr" else " and "
    verb_text = ", ".join(verbs[:-1]) + joiner + verbs[-1] if len(verbs) > 1 else verbs[0]
    text = f"{verb_text[0].upper()}{verb_text[1:]} {what}, {_LEVEL_WORDS[lang][rs.level]}"
    if rs.restriction:
        cond = ", ".join(f"{k}={v}" for k, v in rs.restriction)
        text += f" ({'seulement si' if lang == 'fr' else 'only where'} {cond})"
    return text


def describe_scope(token: str, lang: str = "fr") -> str:
    rs = parse_resource_scope(token)
    if rs is not None:
        return describe_resource_scope(rs, lang)
    lang = lang if lang in _SIMPLE_WORDS else "en"
    return _SIMPLE_WORDS[lang].get(token, token)
