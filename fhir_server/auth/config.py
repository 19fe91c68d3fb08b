"""Settings of the authorization server.

Read from `Settings.extra["auth"]` (a dict) first, then from the environment for the few deployment
knobs the issue names (DMP_KEYS_DIR, DMP_REGISTRATION_TOKEN, DMP_TRUSTED_PROXIES, DMP_OTP_MODE),
so that the application factory keeps passing settings around as data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from fhir_server.config import Settings


@dataclass(frozen=True)
class AuthConfig:
    access_token_ttl: int = 3600  # seconds
    id_token_ttl: int = 3600
    code_ttl: int = 120  # authorization codes: single use, 2 minutes
    launch_ttl: int = 600  # EHR launch contexts
    pending_ttl: int = 1800  # an authorization request waiting for login/consent
    session_ttl: int = 12 * 3600  # browser login session at the authorization server
    refresh_offline_ttl: int = 90 * 24 * 3600
    refresh_online_ttl: int = 12 * 3600
    client_assertion_max_lifetime: int = 300  # private_key_jwt: exp at most 5 minutes ahead
    revocation_cache_seconds: float = 2.0  # "not revoked" answers are cached that long per process
    login_max_failures: int = 5  # per login identifier per window
    login_max_failures_ip: int = 30  # per client address per window
    login_window_seconds: int = 900
    keys_dir: str | None = None  # DMP_KEYS_DIR: keys in <dir>/keys.json instead of the database
    registration_token: str | None = None  # DMP_REGISTRATION_TOKEN: initial access token for /oauth2/register
    trusted_proxies: str | None = None  # DMP_TRUSTED_PROXIES: "1" (hop count) or "10.0.0.1,10.0.0.0/24"
    otp_mode: str = "log"  # second factor when an account has one but no TOTP secret: code in server logs

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        values: dict = {}
        env = {
            "keys_dir": "DMP_KEYS_DIR",
            "registration_token": "DMP_REGISTRATION_TOKEN",
            "trusted_proxies": "DMP_TRUSTED_PROXIES",
            "otp_mode": "DMP_OTP_MODE",
        }
        for name, var in env.items():
            if os.environ.get(var):
                values[name] = os.environ[var]
        extra = (settings.extra or {}).get("auth") or {}
        known = {f.name for f in fields(cls)}
        values.update({k: v for k, v in extra.items() if k in known})
        return cls(**values)
