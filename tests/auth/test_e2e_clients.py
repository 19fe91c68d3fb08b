"""Real SMART clients over real HTTP (loopback only):

* the npm `fhirclient` package (Node, pkceMode "required") completes a standalone launch and a refresh,
  while headless Chromium (Debian's /usr/bin/chromium driven by Playwright) fills the login and consent
  pages; a screenshot is kept under artifacts/;
* authlib's OAuth2Session (Python, PKCE S256) does the same, with a plain HTTP "browser" that submits the
  HTML forms, and refuses a forged `state`.

Nothing is skipped: without node, the npm package or Chromium these tests fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from joserfc import jwk, jwt

from fhir_server.auth import register_client
from tests.auth.conftest import PASSWORD, USER_SCOPE

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verify(live_server: str, token: str, audience: str, typ: str = "at+jwt") -> dict:
    issuer = live_server.rsplit("/fhir", 1)[0]
    config = requests.get(f"{live_server}/.well-known/smart-configuration", timeout=10).json()
    assert config["issuer"] == issuer
    keys = jwk.KeySet.import_key_set(requests.get(config["jwks_uri"], timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == typ
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


# ------------------------------------------------------------------ npm fhirclient + Playwright/Chromium
class NodeApp:
    def __init__(self, iss: str, client_id: str, port: int):
        node = shutil.which("node")
        assert node, "node is not installed: run scripts/install-browser-deps.sh"
        assert (NODE_DIR / "node_modules" / "fhirclient").is_dir(), (
            "npm fhirclient missing: run scripts/install-browser-deps.sh"
        )
        env = {**os.environ, "ISS": iss, "CLIENT_ID": client_id, "PORT": str(port)}
        self.proc = subprocess.Popen(
            [node, "smart_app.js"],
            cwd=NODE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict] = []
        self._done = threading.Event()
        self._listening = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.events.append(event)
            if event.get("event") == "listening":
                self._listening.set()
            if event.get("event") in ("done", "error"):
                self._done.set()
        self._listening.set()
        self._done.set()

    def wait_listening(self):
        assert self._listening.wait(20), "the Node SMART app did not start"
        assert self.proc.poll() is None, self.proc.stderr.read()

    def result(self, timeout=30) -> dict:
        assert self._done.wait(timeout), "the Node SMART app did not finish"
        final = self.events[-1]
        assert final["event"] == "done", final
        return final

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()


def test_fhirclient_npm_standalone_launch_and_refresh_with_chromium(app, live_server, people):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian chromium missing: run scripts/install-browser-deps.sh"
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/callback"
    client = register_client(
        app, "Appli SMART (fhirclient)", USER_SCOPE, public=True, redirect_uris=[redirect]
    )
    node = NodeApp(live_server, client["client_id"], port)
    try:
        node.wait_listening()
        ARTIFACTS.mkdir(exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(locale="fr-FR")
                page.goto(f"http://127.0.0.1:{port}/launch", wait_until="load", timeout=20000)
                page.wait_for_selector("#login", timeout=15000)
                page.fill("#login", people["patient_ins"])
                page.fill("#password", PASSWORD)
                page.screenshot(path=str(ARTIFACTS / "smart-login.png"), full_page=True)
                page.click("#submit")
                page.wait_for_selector("#approve", timeout=15000)
                assert "Autoriser l'application" in page.content()
                page.screenshot(path=str(ARTIFACTS / "smart-consent.png"), full_page=True)
                page.click("#approve")
                page.wait_for_selector("#done, #failed", timeout=20000)
                page.screenshot(path=str(ARTIFACTS / "smart-app-ready.png"), full_page=True)
                assert page.locator("#done").count() == 1, page.content()
            finally:
                browser.close()
        result = node.result()
    finally:
        node.stop()
    assert (ARTIFACTS / "smart-app-ready.png").stat().st_size > 1000
    assert result["patient"] == people["patient"]
    assert result["fhirUser"] == f"Patient/{people['patient']}"
    assert result["need_patient_banner"] is True and result["smart_style_url"]
    assert result["refresh_token_rotated"] is True
    claims = verify(live_server, result["access_token"], live_server)
    assert claims["patient"] == people["patient"] and claims["client_id"] == client["client_id"]
    refreshed = verify(live_server, result["refreshed_access_token"], live_server)
    assert refreshed["sid"] == claims["sid"] and refreshed["jti"] != claims["jti"]
    id_claims = verify(live_server, result["id_token"], client["client_id"], typ="JWT")
    assert id_claims["fhirUser"] == f"Patient/{people['patient']}" and isinstance(id_claims["sub"], str)
    probe = requests.get(
        f"{live_server}/_probe/whoami",
        headers={"Authorization": f"Bearer {result['refreshed_access_token']}"},
        timeout=10,
    )
    assert probe.status_code == 200 and probe.json()["patient"] == people["patient"]


# ------------------------------------------------------------------ authlib OAuth2Session (Python)
FORM_RE = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.DOTALL)
INPUT_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def submit(browser: requests.Session, response: requests.Response, extra: dict, button: dict | None = None):
    """Post the first form of a page like a browser without JavaScript; returns the response (no redirects)."""
    action, body = FORM_RE.search(response.text).groups()
    data = dict(INPUT_RE.findall(body))
    checked = re.findall(r'name="scope" value="([^"]+)" checked', body)
    if checked:
        data["scope"] = checked
    data.update(extra)
    data.update(button or {})
    return browser.post(urljoin(response.url, action), data=data, allow_redirects=False, timeout=10)


def browse_to_callback(authorization_url: str, login: str) -> str:
    browser = requests.Session()
    r = browser.get(authorization_url, allow_redirects=True, timeout=10)
    assert r.status_code == 200 and 'name="password"' in r.text, r.text
    r = submit(browser, r, {"login": login, "password": PASSWORD})
    assert r.status_code == 303, r.text
    r = browser.get(urljoin(r.url, r.headers["Location"]), timeout=10)
    r = submit(browser, r, {}, {"decision": "approve"})
    assert r.status_code == 302
    return r.headers["Location"]


def test_authlib_oauth2session_with_pkce_s256(app, live_server, people):
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc6749.errors import MismatchingStateException

    redirect = "http://127.0.0.1:9998/cb"
    client = register_client(app, "Appli Python", USER_SCOPE, public=True, redirect_uris=[redirect])
    config = requests.get(f"{live_server}/.well-known/smart-configuration", timeout=10).json()
    scope = "openid fhirUser launch/patient patient/*.rs online_access"

    def session():
        return OAuth2Session(
            client["client_id"],
            scope=scope,
            redirect_uri=redirect,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )

    oauth = session()
    verifier = generate_token(64)
    url, state = oauth.create_authorization_url(
        config["authorization_endpoint"], code_verifier=verifier, aud=live_server
    )
    assert "code_challenge_method=S256" in url
    callback = browse_to_callback(url, people["patient_ins"])
    token = oauth.fetch_token(
        config["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
    )
    assert token["patient"] == people["patient"] and token["token_type"] == "Bearer"
    claims = verify(live_server, token["access_token"], live_server)
    assert claims["scope"] == token["scope"]
    new = oauth.refresh_token(config["token_endpoint"], refresh_token=token["refresh_token"])
    assert new["refresh_token"] != token["refresh_token"] and new["patient"] == people["patient"]

    # a forged state in the callback: the client refuses it, and no token is fetched
    oauth2 = session()
    verifier2 = generate_token(64)
    url2, state2 = oauth2.create_authorization_url(
        config["authorization_endpoint"], code_verifier=verifier2, aud=live_server
    )
    callback2 = browse_to_callback(url2, people["patient_ins"])
    forged = callback2.replace(f"state={state2}", "state=forged-by-attacker")
    assert forged != callback2
    with pytest.raises(MismatchingStateException):
        oauth2.fetch_token(
            config["token_endpoint"], authorization_response=forged, state=state2, code_verifier=verifier2
        )
    # and the server still holds the code for the genuine callback only: the attacker's state changes nothing
    genuine = oauth2.fetch_token(
        config["token_endpoint"], authorization_response=callback2, state=state2, code_verifier=verifier2
    )
    assert genuine["patient"] == people["patient"]
