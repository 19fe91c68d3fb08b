# Production image: gunicorn with several workers, MongoDB from MONGODB_URI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_server ./fhir_server
COPY profiles ./profiles
RUN pip install --no-cache-dir ".[prod]"
ENV DMP_PUBLIC_BASE_URL=http://localhost:8080/fhir
EXPOSE 8080
# Each worker opens its own MongoDB pool after the fork (no --preload).
CMD ["gunicorn", "--workers", "4", "--threads", "4", "--bind", "0.0.0.0:8080", "fhir_server.wsgi:app"]
