"""What an interaction needs to know about the request, independent of HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RequestContext:
    base_url: str  # e.g. http://localhost:8080/fhir (no trailing slash)
    prefer_return: str = "representation"  # minimal | representation | OperationOutcome
    prefer_handling: str = "lenient"  # lenient | strict
    headers: dict[str, str] = field(default_factory=dict)
    access: Any = None  # policy.RequestAccess of the caller: every read and write goes through it


@dataclass
class Result:
    """The outcome of an interaction: the HTTP layer only serialises it."""

    status: int
    resource: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # Binary served as itself
    raw_content_type: str | None = None
    location: str | None = None  # relative "Type/id/_history/n"
