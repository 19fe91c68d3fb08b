"""X-Forwarded-* from trusted proxies only (env DMP_TRUSTED_PROXIES).

"1" / "2": that many proxy hops in front of the app (werkzeug ProxyFix as documented).
"10.0.0.5,10.1.0.0/16": apply ProxyFix (one hop) only when the direct peer is one of these.
Unset: X-Forwarded-* headers are ignored.
"""

from __future__ import annotations

import ipaddress

from werkzeug.middleware.proxy_fix import ProxyFix


class _TrustedPeersProxyFix:
    def __init__(self, app, networks):
        self.plain = app
        self.fixed = ProxyFix(app, x_for=1, x_proto=1, x_host=1, x_port=1, x_prefix=1)
        self.networks = networks

    def __call__(self, environ, start_response):
        try:
            peer = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
        except ValueError:
            peer = None
        if peer is not None and any(peer in net for net in self.networks):
            return self.fixed(environ, start_response)
        return self.plain(environ, start_response)


def install_proxy_fix(app, trusted: str | None) -> None:
    if not trusted:
        return
    trusted = trusted.strip()
    if trusted.isdigit():
        hops = int(trusted)
        if hops > 0:
            app.wsgi_app = ProxyFix(
                app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
            )
        return
    networks = [
        ipaddress.ip_network(part.strip(), strict=False) for part in trusted.split(",") if part.strip()
    ]
    app.wsgi_app = _TrustedPeersProxyFix(app.wsgi_app, networks)
