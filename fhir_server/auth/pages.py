"""Browser side of the authorization server: /authorize, login, second factor, patient picker, consent,
grant management. Plain HTML forms (no JavaScript needed), French and English, CSRF tokens bound to a
server-side session, rate-limited login with one generic failure message (no user enumeration).

The authorization request is validated once (authlib + SMART rules) and stored server-side, bound to the
browser session; later pages only carry its opaque id, so nothing the browser posts afterwards can change
the client, redirect_uri, state, scope ceiling, PKCE challenge or launch context.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import OAuth2Error
from flask import Blueprint, Response, redirect, render_template, request, url_for

from fhir_server.auth import urls
from fhir_server.auth.accounts import (
    find_account,
    ins_person_id,
    professions_from_roles,
    verify_password,
    verify_totp,
)
from fhir_server.auth.i18n import pick_language, texts
from fhir_server.auth.principal import PURPOSES
from fhir_server.auth.scopes import ScopeSet, describe_scope
from fhir_server.auth.store import aware, digest, utcnow

log = logging.getLogger(__name__)

COOKIE = "dmp_auth_session"


def register_pages(bp: Blueprint, service) -> None:
    store = service.store
    cfg = service.config

    # ------------------------------------------------------------------ sessions
    def load_session() -> dict | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        doc = store.sessions.find_one({"_id": digest(sid)})
        if doc is None or aware(doc["expires_at"]) <= utcnow():
            return None
        return doc

    def new_session(carry: dict | None = None) -> tuple[str, dict]:
        sid = secrets.token_urlsafe(32)
        doc = {
            "_id": digest(sid),
            "csrf": secrets.token_urlsafe(24),
            "account_id": None,
            "auth_time": None,
            "otp": None,
            "lang": (carry or {}).get("lang"),
            "expires_at": utcnow() + timedelta(seconds=cfg.session_ttl),
        }
        store.sessions.insert_one(doc)
        if carry is not None:  # session fixation: a new id at login; pending requests follow
            store.pending.update_many({"session": carry["_id"]}, {"$set": {"session": doc["_id"]}})
            store.sessions.delete_one({"_id": carry["_id"]})
        return sid, doc

    def set_cookie(response: Response, sid: str) -> Response:
        response.set_cookie(
            COOKIE,
            sid,
            httponly=True,
            samesite="Lax",
            path=urls.PREFIX,
            secure=urls.issuer().startswith("https://"),
            max_age=cfg.session_ttl,
        )
        return response

    def session_or_new() -> tuple[dict, str | None]:
        sess = load_session()
        if sess is not None:
            return sess, None
        sid, sess = new_session()
        return sess, sid

    def lang_of(sess: dict | None) -> str:
        return pick_language(
            request.values.get("lang"), (sess or {}).get("lang"), request.headers.get("Accept-Language", "")
        )

    def page(
        template: str, sess: dict | None, status: int = 200, new_sid: str | None = None, **context
    ) -> Response:
        lang = lang_of(sess)
        body = render_template(
            f"dmp_auth/{template}", t=texts(lang), lang=lang, csrf=(sess or {}).get("csrf", ""), **context
        )
        response = Response(body, status=status, mimetype="text/html")
        secure_headers(response)
        if new_sid:
            set_cookie(response, new_sid)
        return response

    def secure_headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'"
        )
        return response

    def error_page(message: str, sess=None, status: int = 400) -> Response:
        return page("error.html", sess, status=status, message=message)

    def csrf_ok(sess: dict | None) -> bool:
        sent = request.form.get("csrf_token", "")
        return bool(sess) and bool(sent) and hmac.compare_digest(sent, sess["csrf"])

    def redirect_to_client(uri: str, params: list[tuple[str, str]], new_sid: str | None = None) -> Response:
        response = redirect(add_params_to_uri(uri, params), code=302)
        secure_headers(response)
        if new_sid:
            set_cookie(response, new_sid)
        return response

    def client_error(uri: str, state: str | None, error: str, description: str, new_sid=None) -> Response:
        params = [("error", error), ("error_description", description)]
        if state:
            params.append(("state", state))
        params.append(("iss", urls.issuer()))
        return redirect_to_client(uri, params, new_sid)

    # ------------------------------------------------------------------ /authorize
    @bp.route("/authorize", methods=["GET", "POST"])
    def authorize():
        sess, new_sid = session_or_new()
        data = request.form if request.method == "POST" else request.args
        state = data.get("state")
        try:
            grant = service.server.get_consent_grant(end_user=None)
        except OAuth2Error as err:
            target = getattr(err, "redirect_uri", None)
            if target:
                return client_error(target, state, err.error, err.description or err.error, new_sid)
            # unknown client or redirect_uri not registered: never redirect (RFC 6749 4.1.2.1)
            return page("error.html", sess, 400, new_sid, message=err.description or err.error)
        client = grant.request.client
        redirect_uri = grant.redirect_uri

        def refuse(error: str, description: str) -> Response:
            return client_error(redirect_uri, state, error, description, new_sid)

        if not state:
            return refuse("invalid_request", "The 'state' parameter is required.")
        if not urls.same_url(data.get("aud"), urls.fhir_base_url()):
            return refuse(
                "invalid_request", f"'aud' must be this server's FHIR base URL {urls.fhir_base_url()}."
            )
        scope = ScopeSet.parse(data.get("scope"))
        if "system" in scope.levels():
            return refuse("invalid_scope", "system/ scopes are for backend services (client_credentials).")
        uncovered = client.scope.uncovered(scope)
        if uncovered:
            return refuse("invalid_scope", "Not registered for this client: " + " ".join(uncovered))
        if not scope.resource_scopes and not scope.has("openid"):
            return refuse("invalid_scope", "No usable scope was requested.")
        launch_doc = None
        launch = data.get("launch")
        if launch:
            launch_doc = store.launch.find_one({"_id": launch})
            if launch_doc is None or aware(launch_doc["expires_at"]) <= utcnow():
                return refuse("invalid_request", "Unknown or expired 'launch'.")
            if not scope.has("launch"):
                return refuse("invalid_scope", "An EHR launch needs the 'launch' scope.")
        elif scope.has("launch"):
            return refuse("invalid_request", "The 'launch' scope needs a 'launch' parameter (EHR launch).")
        rid = secrets.token_urlsafe(18)
        store.pending.insert_one(
            {
                "_id": rid,
                "session": sess["_id"],
                "client_id": client.client_id,
                "client_name": client.name,
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": str(scope),
                "code_challenge": data.get("code_challenge"),
                "code_challenge_method": data.get("code_challenge_method"),
                "nonce": data.get("nonce"),
                "launch": launch_doc,
                "patient": None,
                "lang": data.get("ui_locales", "").split(" ")[0] or None,
                "expires_at": utcnow() + timedelta(seconds=cfg.pending_ttl),
            }
        )
        return step(rid, sess, new_sid)

    def load_pending(sess: dict | None) -> dict | None:
        rid = request.values.get("req")
        if not rid or sess is None:
            return None
        doc = store.pending.find_one({"_id": rid})
        if doc is None or doc["session"] != sess["_id"] or aware(doc["expires_at"]) <= utcnow():
            return None
        return doc

    def pending_request():
        """(session, pending authorization request, account, texts); pending is None when either is missing."""
        sess = load_session()
        pending = load_pending(sess)
        account = account_of(sess)
        if account is None:
            pending = None
        return sess, pending, account, texts(lang_of(sess))

    def account_of(sess: dict | None) -> dict | None:
        if not sess or not sess.get("account_id"):
            return None
        return store.accounts.find_one({"_id": sess["account_id"]})

    def step(rid: str, sess: dict, new_sid: str | None = None) -> Response:
        """Where the browser goes next for this authorization request."""
        pending = store.pending.find_one({"_id": rid})
        account = account_of(sess)
        if account is None:
            target = url_for("dmp_auth.login", req=rid)
        else:
            problem = context_problem(pending, account)
            if problem:
                return client_error(
                    pending["redirect_uri"], pending["state"], "access_denied", problem, new_sid
                )
            if needs_picker(pending, account):
                target = url_for("dmp_auth.pick_patient", req=rid)
            else:
                target = url_for("dmp_auth.consent", req=rid)
        response = redirect(target, code=303)
        secure_headers(response)
        if new_sid:
            set_cookie(response, new_sid)
        return response

    def context_problem(pending: dict, account: dict) -> str | None:
        launch = pending.get("launch")
        if launch:
            if account["kind"] not in ("practitioner", "operator"):
                return "This EHR launch was created for a professional."
            if launch.get("created_by") != account.get("fhir_user"):
                return "This EHR launch was created by another user."
        return None

    def needs_picker(pending: dict, account: dict) -> bool:
        scope = ScopeSet.parse(pending["scope"])
        if pending.get("launch") or pending.get("patient"):
            return False
        wants_patient = scope.has("launch/patient") or "patient" in scope.levels()
        if not wants_patient:
            return False
        if account["kind"] == "patient":
            return False
        if account["kind"] == "related-person":
            return len(account.get("patients") or []) > 1
        return True

    # ------------------------------------------------------------------ login
    def rate_limited(keys: list[tuple[str, int]]) -> bool:
        for key, limit in keys:
            doc = store.attempts.find_one({"_id": key})
            if doc and aware(doc["expires_at"]) > utcnow() and doc.get("count", 0) >= limit:
                return True
        return False

    def record_failure(keys: list[tuple[str, int]]) -> None:
        for key, _ in keys:
            doc = store.attempts.find_one({"_id": key})
            if doc is None or aware(doc["expires_at"]) <= utcnow():
                store.attempts.replace_one(
                    {"_id": key},
                    {
                        "_id": key,
                        "count": 1,
                        "expires_at": utcnow() + timedelta(seconds=cfg.login_window_seconds),
                    },
                    upsert=True,
                )
            else:
                store.attempts.update_one({"_id": key}, {"$inc": {"count": 1}})

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        sess, new_sid = session_or_new()
        pending = load_pending(sess)
        target_manage = request.values.get("next") == "manage"
        if pending is None and not target_manage:
            return page("error.html", sess, 400, new_sid, message=texts(lang_of(sess))["expired_request"])
        ctx = {
            "req": pending["_id"] if pending else "",
            "next": "manage" if target_manage else "",
            "client_name": pending["client_name"] if pending else None,
        }
        if request.method == "GET":
            return page("login.html", sess, 200, new_sid, error=None, login="", **ctx)
        if not csrf_ok(sess):
            return page("login.html", sess, 400, new_sid, error=texts(lang_of(sess))["csrf"], login="", **ctx)
        login_value = (request.form.get("login") or "").strip()[:200]
        password = request.form.get("password") or ""
        from fhir_server.auth.accounts import normalize_login

        keys = [
            (f"login:{normalize_login(login_value)}", cfg.login_max_failures),
            (f"ip:{request.remote_addr}", cfg.login_max_failures_ip),
        ]
        t = texts(lang_of(sess))
        if rate_limited(keys):
            return page("login.html", sess, 429, new_sid, error=t["too_many"], login=login_value, **ctx)
        account = find_account(store, login_value) if login_value else None
        ok = verify_password(account["password_hash"] if account else None, password)
        if not ok:
            record_failure(keys)
            return page(
                "login.html", sess, 401, new_sid, error=t["bad_credentials"], login=login_value, **ctx
            )
        store.attempts.delete_one({"_id": keys[0][0]})
        sid, fresh = new_session(carry=sess)
        if account.get("otp"):
            challenge = {
                "account_id": account["_id"],
                "tries": 0,
                "expires_at": utcnow() + timedelta(minutes=5),
            }
            if not account.get("totp_secret"):
                code = f"{secrets.randbelow(10**6):06d}"
                challenge["code_hash"] = hashlib.sha256(code.encode()).hexdigest()
                log.warning(
                    "DMP one-time login code for account %s: %s (development second factor)",
                    account["_id"],
                    code,
                )
            store.sessions.update_one({"_id": fresh["_id"]}, {"$set": {"otp": challenge}})
            response = redirect(
                url_for("dmp_auth.otp", **{k: v for k, v in ctx.items() if k in ("req", "next") and v}),
                code=303,
            )
            return set_cookie(secure_headers(response), sid)
        finish_login(fresh, account)
        return after_login(ctx, fresh, sid)

    def finish_login(sess: dict, account: dict) -> None:
        store.sessions.update_one(
            {"_id": sess["_id"]},
            {"$set": {"account_id": account["_id"], "auth_time": int(time.time()), "otp": None}},
        )
        sess["account_id"] = account["_id"]

    def after_login(ctx: dict, sess: dict, sid: str | None) -> Response:
        if ctx.get("req"):
            return step(ctx["req"], sess, sid)
        response = redirect(url_for("dmp_auth.manage"), code=303)
        secure_headers(response)
        return set_cookie(response, sid) if sid else response

    @bp.route("/otp", methods=["GET", "POST"])
    def otp():
        sess = load_session()
        challenge = (sess or {}).get("otp")
        t = texts(lang_of(sess))
        if not challenge or aware(challenge["expires_at"]) <= utcnow():
            return error_page(t["expired_request"], sess)
        pending = load_pending(sess)
        ctx = {"req": pending["_id"] if pending else "", "next": request.values.get("next", "")}
        account = store.accounts.find_one({"_id": challenge["account_id"]})
        if request.method == "GET":
            return page("otp.html", sess, error=None, totp=bool(account.get("totp_secret")), **ctx)
        if not csrf_ok(sess):
            return page("otp.html", sess, 400, error=t["csrf"], totp=bool(account.get("totp_secret")), **ctx)
        code = (request.form.get("code") or "").strip()
        if account.get("totp_secret"):
            good = verify_totp(account["totp_secret"], code)
        else:
            good = hmac.compare_digest(
                hashlib.sha256(code.encode()).hexdigest(), challenge.get("code_hash", "")
            )
        if not good:
            tries = challenge.get("tries", 0) + 1
            if tries >= 5:
                store.sessions.update_one({"_id": sess["_id"]}, {"$set": {"otp": None}})
                return error_page(t["too_many"], sess, 429)
            store.sessions.update_one({"_id": sess["_id"]}, {"$set": {"otp.tries": tries}})
            return page(
                "otp.html", sess, 401, error=t["bad_code"], totp=bool(account.get("totp_secret")), **ctx
            )
        finish_login(sess, account)
        return after_login(ctx, sess, None)

    @bp.route("/logout", methods=["POST"])
    def logout():
        sess = load_session()
        if sess and csrf_ok(sess):
            store.sessions.delete_one({"_id": sess["_id"]})
        response = redirect(url_for("dmp_auth.login", next="manage"), code=303)
        response.delete_cookie(COOKIE, path=urls.PREFIX)
        return secure_headers(response)

    # ------------------------------------------------------------------ patient picker
    @bp.route("/patient", methods=["GET", "POST"])
    def pick_patient():
        sess, pending, account, t = pending_request()
        if pending is None:
            return error_page(t["expired_request"], sess)
        if account["kind"] == "related-person":
            candidates = [patient_summary(pid) for pid in account.get("patients") or []]
            candidates = [c for c in candidates if c]
        else:
            query = (request.values.get("q") or "").strip()
            candidates = search_patients(query) if query else []
        if request.method == "POST" and request.form.get("patient"):
            if not csrf_ok(sess):
                return error_page(t["csrf"], sess)
            chosen = request.form["patient"]
            allowed = {c["id"] for c in candidates} if account["kind"] == "related-person" else None
            if allowed is not None and chosen not in allowed:
                return error_page(t["not_allowed"], sess, 403)
            if patient_summary(chosen) is None:
                return error_page(t["not_allowed"], sess, 404)
            store.pending.update_one({"_id": pending["_id"]}, {"$set": {"patient": chosen}})
            return step(pending["_id"], sess)
        return page(
            "picker.html",
            sess,
            req=pending["_id"],
            candidates=candidates,
            q=request.values.get("q", ""),
            searchable=account["kind"] != "related-person",
            client_name=pending["client_name"],
        )

    def patient_summary(pid: str) -> dict | None:
        from fhir_server.fhir.errors import FhirError

        try:
            res = service_repo().read("Patient", pid).resource
        except FhirError:
            return None
        name = (res.get("name") or [{}])[0]
        ins = next(
            (i.get("value") for i in res.get("identifier") or [] if i.get("system", "").endswith("1.4.8")), ""
        )
        return {
            "id": pid,
            "name": f"{' '.join(name.get('given', []))} {name.get('family', '')}".strip(),
            "birthDate": res.get("birthDate", ""),
            "ins": ins,
        }

    def search_patients(query: str) -> list[dict]:
        from flask import current_app

        from fhir_server.auth.internal import search_resources

        services = current_app.extensions["dmp"]
        compact = query.replace(" ", "")
        params = (
            [("identifier", f"urn:oid:1.2.250.1.213.1.4.8|{compact}")]
            if compact.isdigit()
            else [("name", query)]
        )
        params.append(("_count", "20"))
        out = []
        by_id = patient_summary(query) if query.replace("-", "").replace(".", "").isalnum() else None
        if by_id:
            out.append(by_id)
        for res in search_resources(services, urls.fhir_base_url(), "Patient", params):
            summary = patient_summary(res["id"])
            if summary and summary["id"] not in {o["id"] for o in out}:
                out.append(summary)
        return out

    def service_repo():
        from flask import current_app

        return current_app.extensions["dmp"].repository

    # ------------------------------------------------------------------ consent
    @bp.route("/consent", methods=["GET", "POST"])
    def consent():
        sess, pending, account, t = pending_request()
        if pending is None:
            return error_page(t["expired_request"], sess)
        lang = lang_of(sess)
        requested = ScopeSet.parse(pending["scope"])
        patient_id = resolve_patient(pending, account)
        if request.method == "GET":
            items = [{"scope": s, "text": describe_scope(s, lang)} for s in requested]
            return page(
                "consent.html",
                sess,
                req=pending["_id"],
                items=items,
                client_name=pending["client_name"],
                account=account,
                patient=patient_summary(patient_id) if patient_id else None,
                professional=account["kind"] == "practitioner",
                purposes=PURPOSES,
                error=None,
            )
        if not csrf_ok(sess):
            return error_page(t["csrf"], sess)
        if request.form.get("decision") != "approve":
            store.pending.delete_one({"_id": pending["_id"]})
            return client_error(
                pending["redirect_uri"], pending["state"], "access_denied", "The user denied the request."
            )
        chosen = set(request.form.getlist("scope"))
        granted = requested.only(chosen)  # a subset of what was asked, never more
        if not granted.resource_scopes and not granted.has("openid"):
            return client_error(
                pending["redirect_uri"], pending["state"], "access_denied", "The user granted no scope."
            )
        purpose, reason = (), None
        if account["kind"] == "practitioner":
            chosen_purpose = request.form.get("purpose", "TREAT")
            if chosen_purpose not in PURPOSES:
                chosen_purpose = "TREAT"
            reason = (request.form.get("btg_reason") or "").strip()[:500] or None
            if chosen_purpose == "BTG" and not reason:
                items = [{"scope": s, "text": describe_scope(s, lang)} for s in requested]
                return page(
                    "consent.html",
                    sess,
                    400,
                    req=pending["_id"],
                    items=items,
                    client_name=pending["client_name"],
                    account=account,
                    patient=patient_summary(patient_id) if patient_id else None,
                    professional=True,
                    purposes=PURPOSES,
                    error=t["btg_reason_required"],
                )
            purpose = (chosen_purpose,)
        ctx = build_context(pending, account, patient_id, purpose, reason if purpose == ("BTG",) else None)
        client = service.query_client(pending["client_id"])
        if client is None:
            return error_page(t["expired_request"], sess)
        grant = service.create_grant(
            client, account, granted, ctx, pending.get("nonce"), sess.get("auth_time")
        )
        code = secrets.token_urlsafe(32)
        store.codes.insert_one(
            {
                "_id": digest(code),
                "client_id": client.client_id,
                "redirect_uri": pending["redirect_uri"],
                "scope": str(granted),
                "code_challenge": pending["code_challenge"],
                "code_challenge_method": pending["code_challenge_method"],
                "grant_id": grant["_id"],
                "used": False,
                "expires_at": utcnow() + timedelta(seconds=cfg.code_ttl),
            }
        )
        store.pending.delete_one({"_id": pending["_id"]})
        if pending.get("launch"):
            store.launch.delete_one({"_id": pending["launch"]["_id"]})  # a launch id is used once
        return redirect_to_client(
            pending["redirect_uri"], [("code", code), ("state", pending["state"]), ("iss", urls.issuer())]
        )

    def resolve_patient(pending: dict, account: dict) -> str | None:
        if pending.get("launch"):
            return pending["launch"]["patient"]
        if pending.get("patient"):
            return pending["patient"]
        if account["kind"] in ("patient", "related-person") and account.get("patients"):
            return account["patients"][0]
        return None

    def build_context(pending, account, patient_id, purpose, reason) -> dict:
        repo = service_repo()
        ctx = {
            "kind": account["kind"],
            "account_id": account["_id"],
            "fhir_user": account.get("fhir_user"),
            "patient": patient_id,
            "subject_name": account.get("name"),
            "purpose_of_use": list(purpose),
            "btg_reason": reason,
            "network_address": request.remote_addr,
            "need_patient_banner": (
                bool(pending["launch"].get("need_patient_banner")) if pending.get("launch") else True
            ),
        }
        if pending.get("launch") and pending["launch"].get("encounter"):
            ctx["encounter"] = pending["launch"]["encounter"]
        if account["kind"] == "practitioner":
            professions = [(p["system"], p["code"]) for p in account.get("professions") or []]
            if account.get("fhir_user"):
                try:
                    professions = (
                        professions_from_roles(service_app_services(), account["fhir_user"]) or professions
                    )
                except Exception:  # pragma: no cover - directory lookups never block a login
                    log.exception("PractitionerRole lookup failed")
            ctx["professions"] = [{"system": s, "code": c} for s, c in professions]  # no nested arrays
            ctx["npi"] = account.get("npi")
        if patient_id:
            try:
                ctx["person_id"] = ins_person_id(repo.read("Patient", patient_id).resource)
            except Exception:
                ctx["person_id"] = account.get("person_id")
        return ctx

    def service_app_services():
        from flask import current_app

        return current_app.extensions["dmp"]

    # ------------------------------------------------------------------ grant management
    @bp.route("/manage", methods=["GET", "POST"])
    def manage():
        sess = load_session()
        account = account_of(sess)
        if account is None:
            response = redirect(url_for("dmp_auth.login", next="manage"), code=303)
            return secure_headers(response)
        if request.method == "POST":
            if not csrf_ok(sess):
                return error_page(texts(lang_of(sess))["csrf"], sess)
            gid = request.form.get("grant")
            grant = store.grants.find_one({"_id": gid}) if gid else None
            if grant and grant.get("account_id") == account["_id"]:
                service.tokens.revoke_grant(gid)
        grants = []
        for g in store.grants.find({"account_id": account["_id"], "revoked": False}):
            if aware(g["expires_at"]) <= utcnow():
                continue
            client = service.query_client(g["client_id"])
            grants.append(
                {
                    "id": g["_id"],
                    "client": client.name if client else g["client_id"],
                    "scope": g["scope"],
                    "created": aware(g["created"]).strftime("%Y-%m-%d %H:%M"),
                }
            )
        return page("manage.html", sess, account=account, grants=grants)

    @bp.app_template_global("qs")
    def _qs(**params) -> str:
        return urlencode({k: v for k, v in params.items() if v})
