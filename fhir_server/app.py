"""Application factory: wiring only."""

from __future__ import annotations

import logging

from flask import Flask, redirect
from flask_smorest import Api

from fhir_server import __version__
from fhir_server.api import openapi
from fhir_server.api.errors import register_error_handlers
from fhir_server.api.fhir_rest import blp as fhir_blueprint
from fhir_server.audit import install as install_audit
from fhir_server.auth import init_auth
from fhir_server.config import Settings
from fhir_server.services import build_services
from fhir_server.storage.database import connect


class FhirApi(Api):
    # Errors are OperationOutcomes, documented per route (fhir_server/api/openapi.py), not flask-smorest's
    # default JSON error schema.
    DEFAULT_ERROR_RESPONSE_NAME = None


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        DMP_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        TESTING=settings.testing,
        API_TITLE="DMP FHIR server",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS=openapi.spec_options(settings.auth_required),
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = connect(settings)
    app.extensions["dmp"] = build_services(db, settings)
    init_auth(app, settings)
    if not settings.auth_required:
        logging.getLogger(__name__).warning(
            "OPEN MODE: authentication is off and every request acts as the operator. Never in production."
        )
    api = FhirApi(app)
    openapi.register_components(api.spec)
    api.register_blueprint(fhir_blueprint, url_prefix=settings.base_path)
    openapi.register_conformance_paths(api.spec, settings.base_path)
    register_error_handlers(app)
    install_audit(app, app.extensions["dmp"].audit)
    if settings.subscriptions.worker:
        app.extensions["dmp"].subscriptions.worker.start()  # rest-hook deliveries from the outbox

    @app.get("/")
    def _root():
        return redirect(f"{settings.base_path}/metadata")

    return app
