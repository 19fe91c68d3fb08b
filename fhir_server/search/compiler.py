"""Search parameter values -> MongoDB filters on the `idx` entries of the resources collection.

Each (parameter, value) becomes an `$elemMatch` on one index entry shape; a comma is `$or`, a
repeated parameter is `$and`. Chains and `_has` are resolved into id sets by sub-queries through
the same compiler, so a chained hidden resource is filtered by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Callable

from fhir_server.fhir.errors import bad_request
from fhir_server.search.dates import DateFormatError, date_range
from fhir_server.search.extract import fold
from fhir_server.search.registry import SearchParam

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_PREFIX_RE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[\d-])")


@dataclass
class ParsedParam:
    name: str  # as written, e.g. "subject:Patient.name"
    code: str
    modifier: str | None
    chain: str | None
    values: list[str]


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape \\, \\| \\$."""
    parts, current, i = [], "", 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            current += raw[i : i + 2]
            i += 2
            continue
        if ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", value)


def _split_pipe(value: str) -> tuple[str | None, str]:
    """'system|code' -> (system, code); '|code' -> ('', code); 'code' -> (None, code)."""
    idx = -1
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "|":
            idx = i
            break
        i += 1
    if idx < 0:
        return None, _unescape(value)
    return _unescape(value[:idx]), _unescape(value[idx + 1 :])


def _prefix(value: str) -> tuple[str, str]:
    match = _PREFIX_RE.match(value)
    if match:
        return match.group(1), value[2:]
    return "eq", value


def _elem(code: str, **conditions) -> dict:
    return {"idx": {"$elemMatch": {"p": code, **conditions}}}


def _missing(code: str, missing: str, name: str) -> dict:
    if missing not in ("true", "false"):
        raise bad_request(f"Search parameter '{name}': :missing takes true or false.", [name])
    has = {"idx.p": code}
    return {"idx.p": {"$ne": code}} if missing == "true" else has


class Compiler:
    def __init__(self, base_url_prefixes: tuple[str, ...] = ()):
        self.base_url_prefixes = base_url_prefixes

    # --------------------------------------------------------------- entry
    def compile(
        self,
        param: SearchParam,
        parsed: ParsedParam,
        resolve_chain: Callable[[SearchParam, ParsedParam], list[str]] | None = None,
        value_set_codes: Callable[[str], list[tuple[str, str]]] | None = None,
    ) -> dict:
        name = parsed.name
        if parsed.modifier == "missing":
            return _missing(param.code, parsed.values[0] if len(parsed.values) == 1 else "", name)
        if parsed.chain is not None:
            if param.type != "reference" or resolve_chain is None:
                raise bad_request(f"Search parameter '{name}': only reference parameters can be chained.", [name])
            refs = resolve_chain(param, parsed)
            return _elem(param.code, r={"$in": refs})
        method = getattr(self, f"_{param.type}", None)
        if method is None:
            raise bad_request(f"Search parameter '{name}' of type {param.type} is not supported.", [name])
        if param.type == "token" and parsed.modifier in ("in", "not-in"):
            return self._token_in_valueset(param, parsed, value_set_codes)
        if param.type == "token" and parsed.modifier == "not":
            ors = [self._token(param, parsed, v, None) for v in parsed.values]
            return {"$nor": ors}
        ors = [method(param, parsed, v, parsed.modifier) for v in parsed.values if v != ""]
        if not ors:
            raise bad_request(f"Search parameter '{name}' has an empty value.", [name])
        return ors[0] if len(ors) == 1 else {"$or": ors}

    # --------------------------------------------------------------- types
    def _string(self, param, parsed, value, modifier):
        if modifier == "exact":
            return _elem(param.code, x=_unescape(value))
        folded = re.escape(fold(_unescape(value)))
        if modifier == "contains":
            return _elem(param.code, v={"$regex": folded})
        if modifier not in (None, "text"):
            raise bad_request(f"Modifier :{modifier} is not supported on string parameter '{param.code}'.", [parsed.name])
        return _elem(param.code, v={"$regex": "^" + folded})

    def _token(self, param, parsed, value, modifier):
        if modifier == "text":
            return _elem(param.code, t={"$regex": "^" + re.escape(fold(_unescape(value)))})
        if modifier == "of-type":
            pieces = value.split("|")
            if len(pieces) != 3:
                raise bad_request(f"'{parsed.name}' expects system|code|value.", [parsed.name])
            return _elem(param.code, ty=f"{pieces[0]}|{pieces[1]}", c=_unescape(pieces[2]))
        if modifier not in (None, "not"):
            raise bad_request(f"Modifier :{modifier} is not supported on token parameter '{param.code}'.", [parsed.name])
        system, code = _split_pipe(value)
        if system is None:
            return _elem(param.code, c=code)
        if system == "":
            return _elem(param.code, c=code, s={"$exists": False})
        if code == "":
            return _elem(param.code, s=system)
        return _elem(param.code, s=system, c=code)

    def _token_in_valueset(self, param, parsed, value_set_codes):
        if value_set_codes is None:
            raise bad_request(f"'{parsed.name}': value sets are not available.", [parsed.name])
        codes = []
        for url in parsed.values:
            found = value_set_codes(url)
            if found is None:
                raise bad_request(f"'{parsed.name}': value set '{url}' is not known to this server.", [parsed.name])
            codes.extend(found)
        ors = [{"p": param.code, "s": s, "c": c} for s, c in codes] or [{"p": "__none__"}]
        match = {"idx": {"$elemMatch": {"$or": ors}}}
        return match if parsed.modifier == "in" else {"$nor": [match]}

    def _date(self, param, parsed, value, modifier):
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on date parameter '{param.code}'.", [parsed.name])
        prefix, raw = _prefix(value)
        try:
            lo, hi = date_range(raw)
        except DateFormatError as exc:
            raise bad_request(f"Search parameter '{parsed.name}': {exc}.", [parsed.name]) from None
        return _elem(param.code, **self._range_conditions(prefix, lo, hi))

    @staticmethod
    def _range_conditions(prefix: str, lo, hi) -> dict:
        """Conditions on an entry's [lo, hi] against the value's [lo, hi] (FHIR R4 3.1.1.4.1.1)."""
        if prefix == "eq":
            return {"lo": {"$gte": lo}, "hi": {"$lte": hi}}
        if prefix == "ne":
            return {"$or": [{"lo": {"$lt": lo}}, {"hi": {"$gt": hi}}]}
        if prefix == "gt":
            return {"hi": {"$gt": hi}}
        if prefix == "lt":
            return {"lo": {"$lt": lo}}
        if prefix == "ge":
            return {"hi": {"$gte": lo}}
        if prefix == "le":
            return {"lo": {"$lte": hi}}
        if prefix == "sa":
            return {"lo": {"$gt": hi}}
        if prefix == "eb":
            return {"hi": {"$lt": lo}}
        # ap: within 10% of the distance from now, at least a day
        if isinstance(lo, datetime):
            span = max(abs(datetime.now(lo.tzinfo) - lo) / 10, timedelta(days=1))
        else:
            span = max(abs(lo) / 10, 0)
        return {"lo": {"$lte": hi + span}, "hi": {"$gte": lo - span}}

    def _number(self, param, parsed, value, modifier):
        prefix, raw = _prefix(value)
        number, lo, hi = self._number_range(parsed, raw)
        return _elem(param.code, **self._number_conditions(prefix, number, lo, hi))

    def _quantity(self, param, parsed, value, modifier):
        prefix, raw = _prefix(value)
        pieces = raw.split("|")
        number, lo, hi = self._number_range(parsed, pieces[0])
        cond = self._number_conditions(prefix, number, lo, hi)
        if len(pieces) == 3:
            if pieces[1]:
                cond["s"] = pieces[1]
            if pieces[2]:
                cond["c"] = pieces[2]
        return _elem(param.code, **cond)

    @staticmethod
    def _number_range(parsed, raw: str):
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise bad_request(f"Search parameter '{parsed.name}': '{raw}' is not a number.", [parsed.name]) from None
        exponent = number.as_tuple().exponent
        half = Decimal(5) * Decimal(10) ** (exponent - 1) if isinstance(exponent, int) else Decimal(0)
        return float(number), float(number - half), float(number + half)

    @staticmethod
    def _number_conditions(prefix, number, lo, hi) -> dict:
        if prefix == "eq":
            return {"n": {"$gte": lo, "$lt": hi}}
        if prefix == "ne":
            return {"$or": [{"n": {"$lt": lo}}, {"n": {"$gte": hi}}]}
        if prefix in ("gt", "sa"):
            return {"n": {"$gt": number}}
        if prefix in ("lt", "eb"):
            return {"n": {"$lt": number}}
        if prefix == "ge":
            return {"n": {"$gte": number}}
        if prefix == "le":
            return {"n": {"$lte": number}}
        span = abs(number) / 10
        return {"n": {"$gte": number - span, "$lte": number + span}}

    def _uri(self, param, parsed, value, modifier):
        value = _unescape(value)
        if modifier == "below":
            return _elem(param.code, u={"$regex": "^" + re.escape(value.rstrip("/"))})
        if modifier == "above":
            prefixes = []
            current = value
            while current and "/" in current:
                prefixes.append(current)
                current = current.rsplit("/", 1)[0]
            return _elem(param.code, u={"$in": prefixes or [value]})
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on uri parameter '{param.code}'.", [parsed.name])
        return _elem(param.code, u=value)

    def _reference(self, param, parsed, value, modifier):
        value = _unescape(value)
        if modifier == "identifier":
            system, code = _split_pipe(value)
            cond: dict = {"c": code}
            if system:
                cond["s"] = system
            return _elem(param.code, **cond)
        for prefix in self.base_url_prefixes:
            if value.startswith(prefix):
                value = value[len(prefix) :].lstrip("/")
        value = value.split("/_history/")[0]
        if modifier and modifier[0].isupper():  # :Type
            return _elem(param.code, r=f"{modifier}/{value.split('/')[-1]}")
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on reference parameter '{param.code}'.", [parsed.name])
        if "/" in value and not value.startswith(("http://", "https://", "urn:")):
            return _elem(param.code, r=value)
        if value.startswith(("http://", "https://", "urn:")):
            return _elem(param.code, r=value)
        targets = param.target or ()
        if len(targets) == 1:
            return _elem(param.code, r=f"{targets[0]}/{value}")
        return _elem(param.code, r={"$regex": f"/{re.escape(value)}$"})

    def _composite(self, param, parsed, value, modifier):
        raise bad_request(f"Composite parameter '{param.code}' is not supported yet.", [parsed.name])
