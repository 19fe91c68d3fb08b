#!/usr/bin/env python
"""Token benchmarks of the SMART authorization server (in-process, loopback database only).

  .venv/bin/python scripts/bench_tokens.py [--requests 300] [--validations 3000]

1. Token endpoint throughput: client_credentials with a fresh ES384 private_key_jwt assertion per request
   (assertion signing on the client side is timed separately and excluded from the server figure).
2. Access token validation cost per request: signature + claims, then + the revocation lookup
   (one `_id` find in auth_revoked), then with the short "not revoked" cache.

Uses MONGODB_URI when set, else starts the same real MongoDB wire-protocol server as the tests
(scripts/dbserver.py: mongod or FerretDB). Bounded in count and time; prints figures and exits.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _database_uri():
    if os.environ.get("MONGODB_URI"):
        return os.environ["MONGODB_URI"], None
    spec = importlib.util.spec_from_file_location("dbserver", ROOT / "scripts" / "dbserver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dbserver"] = module
    spec.loader.exec_module(module)
    handle = module.start_server()
    return handle.uri, handle


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--validations", type=int, default=3000)
    args = parser.parse_args()

    from joserfc import jwk, jwt

    from fhir_server.app import create_app
    from fhir_server.auth import init_auth, register_client
    from fhir_server.config import Settings

    uri, handle = _database_uri()
    try:
        settings = Settings(mongodb_uri=uri, database=f"dmp_bench_tokens_{uuid.uuid4().hex[:8]}")
        app = create_app(settings)
        if "dmp_auth" not in app.extensions:
            init_auth(app, settings)
        auth = app.extensions["dmp_auth"]
        key = jwk.ECKey.generate_key("P-384", parameters={"kid": "bench", "alg": "ES384"}, private=True)
        jwks = {"keys": [{**key.as_dict(private=False), "kid": "bench", "alg": "ES384"}]}
        client = register_client(app, "bench backend", "system/*.rs", jwks=jwks)
        web = app.test_client()
        token_url = "http://localhost/oauth2/token"

        def assertion():
            now = int(time.time())
            claims = {
                "iss": client["client_id"],
                "sub": client["client_id"],
                "aud": token_url,
                "exp": now + 240,
                "iat": now,
                "jti": uuid.uuid4().hex,
            }
            return jwt.encode({"alg": "ES384", "kid": "bench"}, claims, key, algorithms=["ES384"])

        # warm-up
        for _ in range(5):
            web.post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "scope": "system/Patient.rs",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": assertion(),
                },
            )
        sign_times, server_times, tokens = [], [], []
        deadline = time.monotonic() + 120
        for _ in range(args.requests):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            a = assertion()
            t1 = time.perf_counter()
            r = web.post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "scope": "system/Patient.rs",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": a,
                },
            )
            t2 = time.perf_counter()
            assert r.status_code == 200, r.get_data(as_text=True)
            tokens.append(r.get_json()["access_token"])
            sign_times.append(t1 - t0)
            server_times.append(t2 - t1)
        n = len(server_times)
        total = sum(server_times)
        print(f"token endpoint (client_credentials + ES384 private_key_jwt), {n} requests, one thread:")
        print(f"  throughput  {n / total:8.1f} tokens/s (server side, in-process)")
        print(
            f"  latency     p50 {percentile(server_times, 50) * 1000:6.2f} ms   "
            f"p95 {percentile(server_times, 95) * 1000:6.2f} ms   max {max(server_times) * 1000:6.2f} ms"
        )
        print(f"  client-side assertion signing: {statistics.mean(sign_times) * 1000:.2f} ms each (excluded)")

        issuer, audience = "http://localhost", "http://localhost/fhir"
        token = tokens[-1]
        tokens_service = auth.tokens

        def timed(label, fn, count):
            t0 = time.perf_counter()
            for _ in range(count):
                fn()
            per = (time.perf_counter() - t0) / count
            print(f"  {label:<52} {per * 1e6:8.1f} µs/request  ({1 / per:9.0f}/s)")

        print(f"access token validation ({args.validations} each):")
        saved = tokens_service.revocation_cache
        timed(
            "signature + claims (no revocation check)",
            lambda: tokens_service.decode(token, issuer=issuer, audience=audience, check_revoked=False),
            args.validations,
        )
        tokens_service.revocation_cache = 0
        timed(
            "+ revocation lookup (one indexed find by _id)",
            lambda: tokens_service.decode(token, issuer=issuer, audience=audience),
            max(200, args.validations // 5),
        )
        tokens_service.revocation_cache = 2.0
        tokens_service.forget_cache()
        timed(
            "+ revocation with the 2 s 'not revoked' cache",
            lambda: tokens_service.decode(token, issuer=issuer, audience=audience),
            args.validations,
        )
        tokens_service.revocation_cache = saved
    finally:
        if handle is not None:
            handle.stop()


if __name__ == "__main__":
    main()
