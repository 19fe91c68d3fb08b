"""Errors carry an OperationOutcome and an HTTP status; one handler turns them into responses."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Issue:
    """One OperationOutcome.issue."""

    diagnostics: str
    code: str = "processing"
    severity: str = "error"
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict:
        issue = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue]) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


class FhirError(Exception):
    """A failed interaction: status + OperationOutcome issues (+ extra response headers)."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        code: str = "processing",
        expression: list[str] | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(diagnostics)
        self.status = status
        self.issues = issues or [Issue(diagnostics, code, "error", expression or [])]
        self.headers = headers or {}

    @property
    def diagnostics(self) -> str:
        return "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


def bad_request(msg: str, expression: list[str] | None = None, code: str = "invalid") -> FhirError:
    return FhirError(400, msg, code, expression)


def not_found(msg: str) -> FhirError:
    return FhirError(404, msg, "not-found")


def gone(msg: str) -> FhirError:
    return FhirError(410, msg, "deleted")


def conflict(msg: str) -> FhirError:
    return FhirError(409, msg, "conflict")


def precondition_failed(msg: str) -> FhirError:
    return FhirError(412, msg, "conflict")


def unprocessable(issues: list[Issue]) -> FhirError:
    return FhirError(422, issues[0].diagnostics, issues=issues)
