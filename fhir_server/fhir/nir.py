"""The French NIR (numéro d'inscription au répertoire, "numéro de sécurité sociale"): key and format.

A NIR is 15 characters: sex (1), year of birth (2), month of birth (2), department of birth
(2, Corsica ``2A``/``2B``), commune of birth (3), registration rank (3) and a control key (2).
The key is ``97 - (N mod 97)`` where N is the first 13 characters read as an integer, Corsica's
``2A`` and ``2B`` being read as ``19`` and ``18`` first. This follows the CNAM reference library
(assurance-maladie-digital/nir-validation, ``NirKey.php`` and ``NirValidator.php``).

The functions here are pure (no I/O) so that the validator, the profile checks and the demo data
generator share one definition.
"""

from __future__ import annotations

import re

__all__ = ["ins_identifier", "is_valid_nir", "make_nir", "nir_key", "normalize_nir"]

# Month 01-12, as the CNAM library checks. Real registers also hold "pseudo-months" (20-42,
# 50-99) for people whose birth record has no month; sources disagree on the exact ranges, so they
# are accepted only on request (``allow_unknown_month=True``).
_NIR_RE = re.compile(
    r"\A(?P<sex>[12])"
    r"(?P<year>\d{2})"
    r"(?P<month>\d{2})"
    r"(?P<dept>\d{2}|2A|2B)"
    r"(?P<commune>\d{3})"
    r"(?P<rank>\d{3})"
    r"(?P<key>\d{2})\Z"
)
_NIR13_RE = re.compile(r"\A[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}\Z")
_CORSICA = {"2A": "19", "2B": "18"}


def normalize_nir(value: str) -> str:
    """Return ``value`` without spaces and in upper case (``"2 84 05 2a ..."`` -> ``"284052A..."``).

    Use it on user input before :func:`is_valid_nir`, which only accepts the canonical form.
    """
    return "".join(value.split()).upper()


def nir_key(nir13: str) -> int:
    """Return the control key (1..97) of a NIR given without its key (13 characters).

    Corsica's department codes are replaced before the computation: ``2A`` -> ``19``,
    ``2B`` -> ``18`` (only at the department position, characters 6-7).

    >>> nir_key("2840588321025")
    32
    >>> nir_key("284052A321025")
    52

    Raises ``ValueError`` when ``nir13`` is not 13 characters of the NIR alphabet.
    """
    if not isinstance(nir13, str) or not _NIR13_RE.match(nir13):
        raise ValueError(f"a NIR without key is 13 digits (department 2A/2B allowed), got {nir13!r}")
    dept = nir13[5:7]
    digits = nir13[:5] + _CORSICA.get(dept, dept) + nir13[7:]
    return 97 - (int(digits) % 97)


def _month_ok(month: int, allow_unknown_month: bool) -> bool:
    if 1 <= month <= 12:
        return True
    return allow_unknown_month and (20 <= month <= 42 or 50 <= month <= 99)


def is_valid_nir(nir15: str, *, allow_unknown_month: bool = False) -> bool:
    """Tell whether ``nir15`` is a well-formed 15-character NIR whose key matches.

    Checks: sex ``1``/``2``; year two digits; month ``01``-``12`` (plus the pseudo-months
    ``20``-``42`` and ``50``-``99`` when ``allow_unknown_month`` is true); department two digits
    or ``2A``/``2B``; commune and rank three digits each; key two digits equal to
    :func:`nir_key` of the first 13 characters.

    The value must already be canonical (no spaces, upper-case ``A``/``B``): an identifier value
    is stored as received, so ``"2 84 05 ..."`` is refused here (see :func:`normalize_nir`).
    Non-strings are refused rather than raising.
    """
    if not isinstance(nir15, str):
        return False
    match = _NIR_RE.match(nir15)
    if match is None:
        return False
    if not _month_ok(int(match["month"]), allow_unknown_month):
        return False
    return int(match["key"]) == nir_key(nir15[:13])


def make_nir(
    sex: int | str,
    year: int | str,
    month: int | str,
    dept: str,
    commune: int | str,
    rank: int | str,
) -> str:
    """Build a 15-character NIR with its key.

    - ``sex``: 1 (male) or 2 (female).
    - ``year``: the last two digits of the birth year; a four-digit year is reduced modulo 100.
    - ``month``: 1-12.
    - ``dept``: two characters (``"75"``, ``"2A"``, ``"2B"``, ``"99"`` for births abroad), or a
      three-digit overseas department (``"971"``..``"976"``, ``"98x"``); in that case the commune
      must be below 100 and the NIR holds ``dept[:2]`` then ``dept[2] + commune`` (as the INSEE
      code ``97105`` gives department ``97`` and commune ``105``).
    - ``commune``: the commune number in its department (or the country code for ``"99"``).
    - ``rank``: 1-999, the registration rank.

    >>> make_nir(2, 84, 5, "88", 321, 25)
    '284058832102532'
    >>> make_nir(1, 1985, 3, "971", 5, 12)[:10]
    '1850397105'

    Raises ``ValueError`` on a value out of range.
    """
    sex_s = str(sex)
    if sex_s not in ("1", "2"):
        raise ValueError(f"sex must be 1 or 2, got {sex!r}")
    year_i = int(year)
    if year_i < 0:
        raise ValueError(f"year must be positive, got {year!r}")
    year_i %= 100
    month_i = int(month)
    if not 1 <= month_i <= 12:
        raise ValueError(f"month must be 1..12, got {month!r}")
    dept_s = str(dept).upper()
    commune_i = int(commune)
    if len(dept_s) == 3 and dept_s.isdigit() and dept_s[:2] in ("97", "98"):
        if not 0 <= commune_i <= 99:
            raise ValueError(f"an overseas commune number is 0..99, got {commune!r}")
        commune_i = int(dept_s[2]) * 100 + commune_i
        dept_s = dept_s[:2]
    if not (len(dept_s) == 2 and (dept_s.isdigit() or dept_s in _CORSICA)):
        raise ValueError(f"department must be 2 digits, 2A, 2B or 97x/98x, got {dept!r}")
    if not 0 <= commune_i <= 999:
        raise ValueError(f"commune must be 0..999, got {commune!r}")
    rank_i = int(rank)
    if not 1 <= rank_i <= 999:
        raise ValueError(f"rank must be 1..999, got {rank!r}")
    nir13 = f"{sex_s}{year_i:02d}{month_i:02d}{dept_s}{commune_i:03d}{rank_i:03d}"
    return f"{nir13}{nir_key(nir13):02d}"


INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
FR_CORE_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"


def ins_identifier(nir: str, system: str = INS_NIR_SYSTEM) -> dict:
    """The FR Core INS-NIR Patient.identifier for a NIR (use official, type INS-NIR)."""
    return {
        "use": "official",
        "type": {"coding": [{"system": FR_CORE_V2_0203, "code": "INS-NIR"}]},
        "system": system,
        "value": nir,
    }
