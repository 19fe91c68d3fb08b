"""Every URL the authorization server advertises follows the public base URL.

`Settings.public_base_url` (env DMP_PUBLIC_BASE_URL, e.g. https://dmp.example.org/fhir) wins; else the
request's own scheme and host (which ProxyFix rewrites from X-Forwarded-* only for trusted proxies).
The issuer is the FHIR base without its trailing base path: https://dmp.example.org.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import current_app, request

PREFIX = "/oauth2"


def fhir_base_url() -> str:
    settings = current_app.config["DMP_SETTINGS"]
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return request.host_url.rstrip("/") + request.script_root + settings.base_path


def issuer() -> str:
    base = fhir_base_url()
    path = current_app.config["DMP_SETTINGS"].base_path.rstrip("/")
    if path and base.endswith(path):
        return base[: -len(path)]
    return base


def endpoint(name: str) -> str:
    return f"{issuer()}{PREFIX}/{name}"


def smart_urls(base_url: str) -> dict:
    """The oauth-uris of the CapabilityStatement for a FHIR base URL such as https://host/fhir."""
    base = base_url.rstrip("/")
    try:
        path = current_app.config["DMP_SETTINGS"].base_path.rstrip("/")
    except RuntimeError:  # outside an app context
        path = "/fhir"
    root = base[: -len(path)] if path and base.endswith(path) else base
    return {
        "authorize": f"{root}{PREFIX}/authorize",
        "token": f"{root}{PREFIX}/token",
        "register": f"{root}{PREFIX}/register",
        "revoke": f"{root}{PREFIX}/revoke",
        "introspect": f"{root}{PREFIX}/introspect",
        "manage": f"{root}{PREFIX}/manage",
    }


def same_url(a: str | None, b: str | None) -> bool:
    """URL equality tolerant of one trailing slash (the `aud` check)."""
    if not a or not b:
        return False
    return a.rstrip("/") == b.rstrip("/")


def is_loopback_host(host: str) -> bool:
    """`host` is a bare host name or address (no port): "localhost", "127.0.0.1", "::1"."""
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    return is_loopback_host(parts.hostname or "")


def transport_ok() -> bool:
    """HTTPS, or plain HTTP on loopback only (development)."""
    scheme = urlsplit(issuer()).scheme
    if scheme == "https":
        return True
    return scheme == "http" and is_loopback_url(issuer())
