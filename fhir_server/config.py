"""Settings, read once from the environment and passed around as data."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fhir_server.subscriptions.settings import SubscriptionSettings, subscription_settings_from


def _smtp_from(env) -> "SmtpSettings":
    from fhir_server.notify import SmtpSettings

    return SmtpSettings(
        host=env.get("DMP_SMTP_HOST") or None,
        port=int(env.get("DMP_SMTP_PORT") or 25),
        sender=env.get("DMP_SMTP_FROM") or "dmp-notifications@localhost",
    )


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """Everything the application factory needs; no module reads the environment itself."""

    mongodb_uri: str | None = None  # None: in-process store (mongomock), for a first try only
    database: str = "dmp_fhir"
    base_path: str = "/fhir"
    public_base_url: str | None = None  # e.g. https://dmp.example.org/fhir; derived from the request if unset
    max_body_bytes: int = 20 * 1024 * 1024
    max_page_size: int = 1000
    default_page_size: int = 50
    # Binary content from this size up is stored as a blob, outside the resource document.
    blob_threshold_bytes: int = 16 * 1024
    # A transaction left pending longer than this (a crashed process) is rolled back by recovery.
    transaction_timeout_seconds: int = 60
    testing: bool = False
    # False only for local exploration and the tests of the REST/search layers: every request then
    # acts as the operator. Production and `dmp-fhir serve` without --open require SMART tokens.
    auth_required: bool = True
    # Only for measuring the audit overhead (scripts/bench_crud.py): production always audits.
    audit_enabled: bool = True
    audit_retention_days: int = 3650
    # E-mail notifications to patients and GPs (off when no SMTP host is set).
    smtp: "SmtpSettings" = field(default_factory=lambda: _smtp_from(os.environ))
    # FHIR R4 rest-hook Subscriptions: the delivery worker, retries and endpoint rules.
    subscriptions: SubscriptionSettings = field(default_factory=lambda: subscription_settings_from(os.environ))
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        values = dict(
            mongodb_uri=os.environ.get("MONGODB_URI") or None,
            database=os.environ.get("DMP_DATABASE", "dmp_fhir"),
            public_base_url=os.environ.get("DMP_PUBLIC_BASE_URL") or None,
            max_body_bytes=_int_env("DMP_MAX_BODY_BYTES", 20 * 1024 * 1024),
            max_page_size=_int_env("DMP_MAX_PAGE_SIZE", 1000),
            default_page_size=_int_env("DMP_DEFAULT_PAGE_SIZE", 50),
            audit_enabled=os.environ.get("DMP_AUDIT_DISABLED_FOR_BENCHMARK") != "1",
            audit_retention_days=_int_env("DMP_AUDIT_RETENTION_DAYS", 3650),
        )
        values.update(overrides)
        return cls(**values)
