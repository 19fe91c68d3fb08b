"""The `dmp-fhir` console entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fhir_server.config import Settings


@click.group(help="FHIR R4 server for the French DMP. The database comes from MONGODB_URI.")
def main() -> None:
    pass


@main.command(help="Serve the FHIR API (base /fhir) with waitress.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int, help="Worker threads.")
@click.option("--demo/--no-demo", default=False, help="Load a small French demo data set at start-up.")
@click.option("--demo-patients", default=20, show_default=True, type=int)
@click.option(
    "--open", "open_mode", is_flag=True,
    help="No authentication: every request acts as the operator. Local exploration only, never in production.",
)
def serve(host: str, port: int, threads: int, demo: bool, demo_patients: int, open_mode: bool) -> None:
    import waitress

    from fhir_server.app import create_app

    app = create_app(Settings.from_env(auth_required=not open_mode))
    if demo:
        _load_demo(app, demo_patients)
        from fhir_server.auth import ensure_demo_accounts

        click.echo("demo accounts (role, login, password, FHIR user):")
        for row in ensure_demo_accounts(app):
            click.echo(f"  {row['role']:<15} {row['login']:<26} {row['password']:<24} {row['fhirUser'] or ''}")
    click.echo(f"DMP FHIR server on http://{host}:{port}/fhir  (CapabilityStatement: /fhir/metadata)")
    waitress.serve(app, host=host, port=port, threads=threads, ident="dmp-fhir")


@main.command(help="Load transaction/batch Bundle JSON files, or generated demo data, into the database.")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--demo", "demo_patients", type=int, default=0, help="Generate and load N demo patients.")
@click.option("--seed", type=int, default=42, show_default=True)
def load(files: tuple[Path, ...], demo_patients: int, seed: int) -> None:
    from fhir_server.app import create_app

    if not files and not demo_patients:
        raise click.UsageError("Give bundle files or --demo N.")
    app = create_app(Settings.from_env())
    bundles = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    if demo_patients:
        from fhir_server.demo_data import generate

        bundles += generate(demo_patients, seed=seed)
    count = _post_bundles(app, bundles)
    click.echo(f"loaded {count} resources from {len(bundles)} bundles")


@main.group(help="OAuth clients of the SMART authorization server.")
def clients() -> None:
    pass


@clients.command("register", help="Register a client and print it as JSON (the secret is shown only once).")
@click.option("--name", required=True)
@click.option("--scope", required=True)
@click.option("--jwks", "jwks", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--public", is_flag=True)
@click.option("--secret", is_flag=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True)
def clients_register(name, scope, jwks, public, secret, redirect_uris) -> None:
    from fhir_server.app import create_app
    from fhir_server.auth import register_client

    app = create_app(Settings.from_env())
    try:
        out = register_client(app, name, scope, jwks=jwks, public=public, secret=secret, redirect_uris=redirect_uris)
    except ValueError as exc:  # bad client metadata
        raise click.UsageError(str(exc)) from exc
    click.echo(json.dumps(out, indent=2, ensure_ascii=False))


@main.group(help="The audit trail: verify its hash chains, export it, apply the retention period.")
def audit() -> None:
    pass


@audit.command("verify", help="Check every hash chain; exit 1 and name the first broken link if any.")
def audit_verify() -> None:
    from fhir_server.app import create_app

    app = create_app(Settings.from_env())
    count, problems = app.extensions["dmp"].audit.verify()
    for problem in problems:
        click.echo(f"BROKEN: {problem}")
    click.echo(f"{count} audit events checked, {len(problems)} problem(s)")
    if problems:
        raise SystemExit(1)


@audit.command("export", help="Write audit events as NDJSON (one AuditEvent per line) to stdout.")
@click.option("--since", default=None, help="FHIR date or dateTime, e.g. 2026-01-01")
def audit_export(since: str | None) -> None:
    import orjson

    from fhir_server.app import create_app
    from fhir_server.search.dates import DateFormatError, date_range

    try:
        lower = date_range(since)[0] if since else None
    except DateFormatError as exc:
        raise click.UsageError(str(exc)) from exc
    app = create_app(Settings.from_env())
    out = click.get_binary_stream("stdout")
    for event in app.extensions["dmp"].audit.iter_events(lower):
        out.write(orjson.dumps(event) + b"\n")


@audit.command("purge", help="Apply the retention period (DMP_AUDIT_RETENTION_DAYS, default 10 years).")
def audit_purge() -> None:
    from datetime import datetime, timedelta, timezone

    from fhir_server.app import create_app

    settings = Settings.from_env()
    app = create_app(settings)
    before = datetime.now(timezone.utc) - timedelta(days=settings.audit_retention_days)
    click.echo(f"{app.extensions['dmp'].audit.purge(before)} audit events older than {before:%Y-%m-%d} removed")


@main.group(help="Notifications to patients (SMTP from DMP_SMTP_HOST / DMP_SMTP_PORT / DMP_SMTP_FROM).")
def notify() -> None:
    pass


@notify.command("invisible", help="Tell patients about documents still hidden from them after two weeks (run daily).")
def notify_invisible() -> None:
    from datetime import datetime, timedelta, timezone

    from fhir_server.app import create_app

    app = create_app(Settings.from_env())
    notifier = app.extensions["dmp"].notifier
    count = notifier.notify_invisible_documents(datetime.now(timezone.utc) - timedelta(days=14))
    notifier.flush()
    click.echo(f"{count} notification(s) queued and sent")


def _post_bundles(app, bundles: list[dict]) -> int:
    """Process bundles through the server's own transaction interaction, as the operator."""
    from rich.progress import Progress

    from fhir_server.fhir.errors import FhirError
    from fhir_server.interactions.context import RequestContext
    from fhir_server.policy import operator_principal

    services = app.extensions["dmp"]
    settings = app.config["DMP_SETTINGS"]
    base = (settings.public_base_url or "http://localhost:8080/fhir").rstrip("/")
    ctx = RequestContext(base_url=base, access=services.policy.for_principal(operator_principal("dmp-fhir-cli")))
    total = 0
    with Progress(transient=not sys.stdout.isatty()) as progress:
        task = progress.add_task("loading", total=len(bundles))
        for bundle in bundles:
            try:
                services.bundles.process(ctx, bundle)
            except FhirError as err:
                raise click.ClickException(f"bundle refused ({err.status}): {json.dumps(err.outcome())}") from None
            total += len(bundle.get("entry", []))
            progress.advance(task)
    return total


def _load_demo(app, patients: int) -> None:
    from fhir_server.demo_data import generate

    count = _post_bundles(app, generate(patients, seed=42))
    click.echo(f"demo data: {count} resources ({patients} patients)")


if __name__ == "__main__":
    main()
