"""Production WSGI entry: `waitress-serve --threads 8 fhir_server.wsgi:app` or
`gunicorn -w 4 'fhir_server.wsgi:app'` (each worker opens its own MongoDB connection pool)."""

from fhir_server.app import create_app

app = create_app()
