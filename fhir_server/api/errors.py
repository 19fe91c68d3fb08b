"""Every error leaves the server as an OperationOutcome with the right status, never a trace."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from fhir_server.api.negotiation import fhir_response
from fhir_server.fhir.errors import FhirError, Issue, operation_outcome
from fhir_server.interactions.context import Result

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {400: "invalid", 404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FhirError)
    def _fhir_error(err: FhirError):
        return fhir_response(Result(err.status, err.outcome(), dict(err.headers)))

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        message = err.description or err.name
        if status == 413:
            message = "The request body is larger than this server accepts."
        issue = Issue(message, HTTP_ISSUE_CODES.get(status, "processing"))
        headers = {}
        if status == 405 and getattr(err, "valid_methods", None):
            headers["Allow"] = ", ".join(err.valid_methods)
        return fhir_response(Result(status, operation_outcome([issue]), headers))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        issue = Issue("Internal server error; the incident was logged.", "exception", "fatal")
        return fhir_response(Result(500, operation_outcome([issue])))
