"""Search parameter values -> MongoDB filters on the flat index keys (see search.extract).

A comma is `$or`, a repeated parameter is `$and`. Chains and `_has` are resolved into id sets by
sub-queries through the same compiler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Callable

from fhir_server.fhir.errors import bad_request
from fhir_server.search.dates import DateFormatError, date_range
from fhir_server.search.extract import ANY_SYSTEM, composite_key, fold, reference_target, token_key
from fhir_server.search.registry import SearchParam

_PREFIX_RE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[\d-])")


@dataclass
class ParsedParam:
    name: str  # as written, e.g. "subject:Patient.name"
    code: str
    modifier: str | None
    chain: str | None
    values: list[str]


def split_values(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash."""
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


def unescape(value: str) -> str:
    return re.sub(r"\\([,|$\\])", r"\1", value)


def split_pipe(value: str) -> tuple[str | None, str]:
    """'system|code' -> (system, code); '|code' -> ('', code); 'code' -> (None, code)."""
    i = 0
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == "|":
            return unescape(value[:i]), unescape(value[i + 1 :])
        i += 1
    return None, unescape(value)


def split_prefix(value: str) -> tuple[str, str]:
    match = _PREFIX_RE.match(value)
    if match:
        return match.group(1), value[2:]
    return "eq", value


def _prefix_regex(key_prefix: str) -> dict:
    return {"$regex": "^" + re.escape(key_prefix)}


def range_conditions(field: str, prefix: str, lo, hi) -> dict:
    """Compare a stored [field.lo, field.hi] range with the searched [lo, hi] (FHIR R4 3.1.1.4.1.1)."""
    flo, fhi = f"{field}.lo", f"{field}.hi"
    if prefix == "eq":
        return {flo: {"$gte": lo}, fhi: {"$lte": hi}}
    if prefix == "ne":
        return {"$or": [{flo: {"$lt": lo}}, {fhi: {"$gt": hi}}]}
    if prefix == "gt":
        return {fhi: {"$gt": hi}}
    if prefix == "lt":
        return {flo: {"$lt": lo}}
    if prefix == "ge":
        return {fhi: {"$gte": lo}}
    if prefix == "le":
        return {flo: {"$lte": hi}}
    if prefix == "sa":
        return {flo: {"$gt": hi}}
    if prefix == "eb":
        return {fhi: {"$lt": lo}}
    # ap: within 10% of the distance between the value and now, at least a day
    span = max(abs(datetime.now(lo.tzinfo) - lo) / 10, timedelta(days=1))
    return {flo: {"$lte": hi + span}, fhi: {"$gte": lo - span}}


def parse_date(name: str, raw: str):
    try:
        return date_range(raw)
    except DateFormatError as exc:
        raise bad_request(f"Search parameter '{name}': {exc}.", [name]) from None


class Compiler:
    def __init__(self, base_url_prefixes: tuple[str, ...] = ()):
        self.base_url_prefixes = base_url_prefixes

    def compile(
        self,
        param: SearchParam,
        parsed: ParsedParam,
        resolve_chain: Callable[[SearchParam, ParsedParam], list[str]] | None = None,
        value_set_codes: Callable[[str], list[tuple[str, str]] | None] | None = None,
    ) -> dict:
        name = parsed.name
        if parsed.modifier == "missing":
            if parsed.values not in (["true"], ["false"]):
                raise bad_request(f"Search parameter '{name}': :missing takes true or false.", [name])
            return {"ix.pp": {"$ne": param.code}} if parsed.values == ["true"] else {"ix.pp": param.code}
        if parsed.chain is not None:
            if param.type != "reference" or resolve_chain is None:
                raise bad_request(f"Search parameter '{name}': only reference parameters can be chained.", [name])
            refs = resolve_chain(param, parsed)
            return {"ix.rf": {"$in": [f"{param.code}|{r}" for r in refs]}}
        method = getattr(self, f"_{param.type}", None)
        if method is None:
            raise bad_request(f"Search parameter '{name}' of type {param.type} is not supported.", [name])
        if param.type == "token" and parsed.modifier in ("in", "not-in"):
            return self._token_in_valueset(param, parsed, value_set_codes)
        values = [v for v in parsed.values if v != ""]
        if not values:
            raise bad_request(f"Search parameter '{name}' has an empty value.", [name])
        if param.type == "token" and parsed.modifier == "not":
            return {"$nor": [self._token(param, parsed, v, None) for v in values]}
        ors = [method(param, parsed, v, parsed.modifier) for v in values]
        return ors[0] if len(ors) == 1 else {"$or": ors}

    # --------------------------------------------------------------- types
    def _string(self, param, parsed, value, modifier):
        code = param.code
        if modifier == "exact":
            return {"ix.sx": f"{code}|{unescape(value)}"}
        folded = fold(unescape(value))
        if modifier == "contains":
            return {"ix.st": {"$regex": "^" + re.escape(code + "|") + ".*" + re.escape(folded)}}
        if modifier not in (None, "text"):
            raise bad_request(f"Modifier :{modifier} is not supported on string parameter '{code}'.", [parsed.name])
        return {"ix.st": _prefix_regex(f"{code}|{folded}")}

    def _token(self, param, parsed, value, modifier):
        code = param.code
        if modifier == "text":
            return {"ix.tk": _prefix_regex(f"{code}:text|{fold(unescape(value))}")}
        if modifier == "of-type":
            pieces = value.split("|")
            if len(pieces) != 3:
                raise bad_request(f"'{parsed.name}' expects type-system|type-code|value.", [parsed.name])
            return {"ix.tk": f"{code}:of-type|{pieces[0]}|{pieces[1]}|{unescape(pieces[2])}"}
        if modifier not in (None, "not"):
            raise bad_request(f"Modifier :{modifier} is not supported on token parameter '{code}'.", [parsed.name])
        system, value = split_pipe(value)
        if system is None:
            return {"ix.tk": token_key(code, ANY_SYSTEM, value)}
        if value == "":
            return {"ix.tk": _prefix_regex(f"{code}|{system}|")}
        return {"ix.tk": token_key(code, system, value)}

    def _token_in_valueset(self, param, parsed, value_set_codes):
        codes: list[tuple[str, str]] = []
        for url in parsed.values:
            found = value_set_codes(url) if value_set_codes else None
            if found is None:
                raise bad_request(f"'{parsed.name}': value set '{url}' is not known to this server.", [parsed.name])
            codes.extend(found)
        match = {"ix.tk": {"$in": [token_key(param.code, s, c) for s, c in codes]}}
        return match if parsed.modifier == "in" else {"$nor": [match]}

    def _date(self, param, parsed, value, modifier):
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on date parameter '{param.code}'.", [parsed.name])
        prefix, raw = split_prefix(value)
        lo, hi = parse_date(parsed.name, raw)
        return range_conditions(f"ix.dt.{param.code}", prefix, lo, hi)

    def _number(self, param, parsed, value, modifier):
        prefix, raw = split_prefix(value)
        return self._number_conditions(f"ix.nm.{param.code}.n", parsed, prefix, raw)

    def _quantity(self, param, parsed, value, modifier):
        prefix, raw = split_prefix(value)
        pieces = raw.split("|")
        cond = self._number_conditions(f"ix.nm.{param.code}.n", parsed, prefix, pieces[0])
        if len(pieces) == 3:
            if pieces[1]:
                cond[f"ix.nm.{param.code}.s"] = pieces[1]
            if pieces[2]:
                cond[f"ix.nm.{param.code}.c"] = pieces[2]
        return cond

    @staticmethod
    def _number_conditions(field: str, parsed, prefix: str, raw: str) -> dict:
        try:
            number = Decimal(raw)
        except InvalidOperation:
            raise bad_request(f"Search parameter '{parsed.name}': '{raw}' is not a number.", [parsed.name]) from None
        exponent = number.as_tuple().exponent
        half = Decimal(5) * Decimal(10) ** (exponent - 1) if isinstance(exponent, int) else Decimal(0)
        value, lo, hi = float(number), float(number - half), float(number + half)
        if prefix == "eq":
            return {field: {"$gte": lo, "$lt": hi}}
        if prefix == "ne":
            return {"$or": [{field: {"$lt": lo}}, {field: {"$gte": hi}}]}
        if prefix in ("gt", "sa"):
            return {field: {"$gt": value}}
        if prefix in ("lt", "eb"):
            return {field: {"$lt": value}}
        if prefix == "ge":
            return {field: {"$gte": value}}
        if prefix == "le":
            return {field: {"$lte": value}}
        span = abs(value) / 10
        return {field: {"$gte": value - span, "$lte": value + span}}

    def _uri(self, param, parsed, value, modifier):
        value = unescape(value)
        code = param.code
        if modifier == "below":
            return {"ix.ur": _prefix_regex(f"{code}|{value}")}
        if modifier == "above":
            candidates = []
            current = value
            while "/" in current and not current.endswith(":/"):
                candidates.append(f"{code}|{current}")
                current = current.rsplit("/", 1)[0]
            return {"ix.ur": {"$in": candidates or [f"{code}|{value}"]}}
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on uri parameter '{code}'.", [parsed.name])
        return {"ix.ur": f"{code}|{value}"}

    def _composite(self, param, parsed, value, modifier):
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on composite parameter '{param.code}'.", [parsed.name])
        parts = value.split("$")
        if len(parts) != len(param.components):
            raise bad_request(
                f"'{parsed.name}' takes {len(param.components)} values joined by '$'.", [parsed.name]
            )
        normalised = []
        for part in parts:
            part = unescape(part)
            if "/" in part and not part.startswith(("http://", "https://", "urn:")):
                part = reference_target(part)
            for prefix in self.base_url_prefixes:
                if part.startswith(prefix + "/"):
                    part = part[len(prefix) + 1 :]
            normalised.append(part)
        return {"ix.tk": composite_key(param.code, normalised)}

    def _reference(self, param, parsed, value, modifier):
        value = unescape(value)
        code = param.code
        if modifier == "identifier":
            system, ident = split_pipe(value)
            return {"ix.tk": token_key(code, ANY_SYSTEM if system is None else system, ident)}
        for prefix in self.base_url_prefixes:
            if value.startswith(prefix + "/"):
                value = value[len(prefix) + 1 :]
        if modifier and modifier[0].isupper():  # :Type
            return {"ix.rf": f"{code}|{modifier}/{value.split('/')[-1]}"}
        if modifier:
            raise bad_request(f"Modifier :{modifier} is not supported on reference parameter '{code}'.", [parsed.name])
        if value.startswith(("http://", "https://", "urn:")):
            return {"ix.rf": f"{code}|{reference_target(value)}"}
        if "/" in value:
            target = reference_target(value)
            if target.count("/") != 1:
                raise bad_request(f"Search parameter '{parsed.name}': '{value}' is not a reference.", [parsed.name])
            return {"ix.rf": f"{code}|{target}"}
        targets = param.target or ()
        return {"ix.rf": {"$in": [f"{code}|{t}/{value}" for t in targets]}} if targets else {
            "ix.rf": {"$regex": "^" + re.escape(code + "|") + "[A-Za-z]+/" + re.escape(value) + "$"}
        }
