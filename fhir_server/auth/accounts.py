"""People who log in: patients, legal representatives of minors, professionals, the operator.

Login identifiers (`logins`, unique): a patient's INS (15 digits) and/or e-mail, a professional's RPPS
number (11 digits, standing in for the CPS/e-CPS card), a representative's e-mail, the operator's name.
Passwords are hashed with argon2id (argon2-cffi). Optional second factor per account:
  - "totp": RFC 6238 code from an authenticator app (secret stored on the account);
  - "log": a 6-digit code written to the server log (development / demo only).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import struct
import time
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from fhir_server.fhir.nir import ins_identifier as _ins_identifier
from fhir_server.auth.principal import TRE_G15, TRE_R38
from fhir_server.auth.store import AuthStore, utcnow

log = logging.getLogger(__name__)

INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
KINDS = ("patient", "related-person", "practitioner", "operator")

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 "second recommended" profile)
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def normalize_login(value: str) -> str:
    value = (value or "").strip()
    if "@" in value:
        return value.lower()
    compact = value.replace(" ", "").replace(".", "").replace("-", "")
    return compact if compact.isdigit() else value.lower()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------------------- TOTP (RFC 6238)
def totp_code(secret_b32: str, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    key = base64.b32decode(secret_b32.upper() + "=" * (-len(secret_b32) % 8))
    counter = int((at if at is not None else time.time()) // step)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % (10**digits)
    return f"{value:0{digits}d}"


def verify_totp(secret_b32: str, code: str, window: int = 1) -> bool:
    now = time.time()
    code = (code or "").strip()
    return any(
        hmac.compare_digest(totp_code(secret_b32, now + i * 30), code) for i in range(-window, window + 1)
    )


def new_totp_secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


# ---------------------------------------------------------------------------- accounts
def create_account(
    store: AuthStore,
    *,
    kind: str,
    logins: list[str],
    password: str,
    fhir_user: str | None,
    name: str,
    patients: list[str] | None = None,
    professions: list[tuple[str, str]] | None = None,
    npi: str | None = None,
    person_id: str | None = None,
    otp: str | None = None,
    totp_secret: str | None = None,
    account_id: str | None = None,
) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    doc = {
        "_id": account_id or uuid.uuid4().hex,
        "kind": kind,
        "logins": sorted({normalize_login(x) for x in logins if x}),
        "password_hash": hash_password(password),
        "fhir_user": fhir_user,
        "name": name,
        "patients": list(patients or []),
        "professions": [
            {"system": s, "code": c} for s, c in professions or []
        ],  # no nested arrays (FerretDB)
        "npi": npi,
        "person_id": person_id,
        "otp": otp,
        "totp_secret": totp_secret,
        "created": utcnow(),
    }
    store.accounts.insert_one(doc)
    return doc


def find_account(store: AuthStore, login: str) -> dict | None:
    return store.accounts.find_one({"logins": normalize_login(login)})


def professions_from_roles(services, practitioner_ref: str) -> list[tuple[str, str]]:
    """Profession (TRE_G15) and specialty (TRE_R38) codings of a Practitioner's PractitionerRoles."""
    out: list[tuple[str, str]] = []
    rid = practitioner_ref.split("/", 1)[-1]
    for version in services.repository.find({"rt": "PractitionerRole", "state": "live"}, limit=5000):
        res = version.resource or {}
        ref = (res.get("practitioner") or {}).get("reference") or ""
        if ref != f"Practitioner/{rid}" and not ref.endswith(f"/Practitioner/{rid}"):
            continue
        for concept in (res.get("code") or []) + (res.get("specialty") or []):
            for coding in concept.get("coding") or []:
                if coding.get("system") and coding.get("code"):
                    pair = (coding["system"], coding["code"])
                    if pair not in out:
                        out.append(pair)
    return out


def ins_person_id(patient_resource: dict) -> str | None:
    """The INS of a Patient as an IUA person_id (HL7 v2 CX: value^^^&OID&ISO)."""
    for ident in patient_resource.get("identifier") or []:
        if ident.get("system") == INS_NIR and ident.get("value"):
            return f"{ident['value']}^^^&1.2.250.1.213.1.4.8&ISO"
    return None


# ---------------------------------------------------------------------------- demo
DEMO_CLIENT_ID = "dmp-demo-app"
DEMO_REDIRECTS = [
    "http://127.0.0.1:9000/callback",
    "http://localhost:9000/callback",
    "http://127.0.0.1:8000/index.html",
    "http://localhost:8000/index.html",
]
DEMO_PASSWORDS = {
    "patient": "demo-patient-2024",
    "gp": "demo-medecin-2024",
    "nurse": "demo-infirmier-2024",
    "representative": "demo-parent-2024",
    "operator": "demo-operateur-2024",
}




def ensure_demo_accounts(app) -> list[dict]:
    """Demo people (patient, GP, nurse, legal representative of a minor, operator) and a public demo client.

    Uses demo Patient/Practitioner resources when present (dmp-fhir serve --demo), else creates minimal ones.
    Idempotent: existing accounts are kept. Returns printable rows (passwords are demo-only constants).
    """
    from fhir_server.auth.clients import create_client
    from fhir_server.auth.internal import create_resource
    from fhir_server.fhir.nir import make_nir

    services = app.extensions["dmp"]
    auth = app.extensions["dmp_auth"]
    store = auth.store
    base = (
        app.config["DMP_SETTINGS"].public_base_url
        or f"http://127.0.0.1:8080{app.config['DMP_SETTINGS'].base_path}"
    )

    def create(resource: dict) -> tuple[str, dict]:
        created = create_resource(services, base, resource)
        return created["id"], created

    patients = list(services.repository.find({"rt": "Patient", "state": "live"}, limit=500))
    adult = next((v for v in patients if (v.resource or {}).get("birthDate", "9999") < "2000"), None)
    minor = next((v for v in patients if (v.resource or {}).get("birthDate", "0000") > "2010"), None)
    if adult is not None:
        adult_id, adult_res = adult.rid, adult.resource
    else:
        adult_id, adult_res = create(
            {
                "resourceType": "Patient",
                "identifier": [_ins_identifier(make_nir(2, 80, 1, "75", 56, 123))],
                "name": [{"use": "official", "family": "Lefèvre", "given": ["Hélène"]}],
                "gender": "female",
                "birthDate": "1980-01-15",
            }
        )
    if minor is not None:
        minor_id, minor_res = minor.rid, minor.resource
    else:
        minor_id, minor_res = create(
            {
                "resourceType": "Patient",
                "identifier": [_ins_identifier(make_nir(1, 15, 3, "75", 56, 142))],
                "name": [{"use": "official", "family": "Lefèvre", "given": ["Jules"]}],
                "gender": "male",
                "birthDate": "2015-03-15",
            }
        )

    practitioners = {}
    roles = list(services.repository.find({"rt": "PractitionerRole", "state": "live"}, limit=5000))

    def find_role(profession: str, specialty: str | None):
        for v in roles:
            res = v.resource or {}
            codes = {c.get("code") for concept in res.get("code") or [] for c in concept.get("coding") or []}
            specs = {
                c.get("code") for concept in res.get("specialty") or [] for c in concept.get("coding") or []
            }
            if profession in codes and (specialty is None or specialty in specs):
                ref = (res.get("practitioner") or {}).get("reference", "")
                if ref:
                    return ref.split("/")[-1]
        return None

    for key, profession, specialty, family, given, rpps in (
        ("gp", "10", "SM54", "Martin", "Paul", "10003456789"),
        ("nurse", "60", None, "Bernard", "Claire", "10009876543"),
    ):
        pid = find_role(profession, specialty)
        if pid is None:
            pid, _ = create(
                {
                    "resourceType": "Practitioner",
                    "identifier": [
                        {"system": RPPS_SYSTEM, "value": rpps},
                        {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps},
                    ],
                    "name": [{"family": family, "given": [given]}],
                }
            )
            role = {
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": f"Practitioner/{pid}"},
                "code": [{"coding": [{"system": TRE_G15, "code": profession}]}],
            }
            if specialty:
                role["specialty"] = [{"coding": [{"system": TRE_R38, "code": specialty}]}]
            create(role)
        prac = services.repository.read("Practitioner", pid).resource
        rpps_value = next(
            (i["value"] for i in prac.get("identifier") or [] if i.get("system") == RPPS_SYSTEM), rpps
        )
        name = prac.get("name", [{}])[0]
        practitioners[key] = (
            pid,
            rpps_value,
            f"{' '.join(name.get('given', []))} {name.get('family', '')}".strip(),
        )

    rel = None
    for v in services.repository.find({"rt": "RelatedPerson", "state": "live"}, limit=500):
        if ((v.resource or {}).get("patient") or {}).get("reference", "").endswith(f"Patient/{minor_id}"):
            rel = v.rid
            break
    if rel is None:
        rel, _ = create(
            {
                "resourceType": "RelatedPerson",
                "patient": {"reference": f"Patient/{minor_id}"},
                "relationship": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                "code": "GUARD",
                                "display": "guardian",
                            }
                        ]
                    }
                ],
                "name": [{"family": "Lefèvre", "given": ["Hélène"]}],
                "telecom": [{"system": "email", "value": "parent.demo@example.org"}],
            }
        )

    def adult_ins(res):
        return next((i["value"] for i in res.get("identifier") or [] if i.get("system") == INS_NIR), None)

    def display(res):
        name = (res.get("name") or [{}])[0]
        return f"{' '.join(name.get('given', []))} {name.get('family', '')}".strip()

    wanted = [
        dict(
            key="patient",
            kind="patient",
            logins=[adult_ins(adult_res), "patient.demo@example.org"],
            fhir_user=f"Patient/{adult_id}",
            name=display(adult_res),
            patients=[adult_id],
            person_id=ins_person_id(adult_res),
        ),
        dict(
            key="gp",
            kind="practitioner",
            logins=[practitioners["gp"][1]],
            fhir_user=f"Practitioner/{practitioners['gp'][0]}",
            name=practitioners["gp"][2],
            npi="8" + practitioners["gp"][1],
        ),
        dict(
            key="nurse",
            kind="practitioner",
            logins=[practitioners["nurse"][1]],
            fhir_user=f"Practitioner/{practitioners['nurse'][0]}",
            name=practitioners["nurse"][2],
            npi="8" + practitioners["nurse"][1],
        ),
        dict(
            key="representative",
            kind="related-person",
            logins=["parent.demo@example.org"],
            fhir_user=f"RelatedPerson/{rel}",
            name="Hélène Lefèvre (représentante légale)",
            patients=[minor_id],
            person_id=ins_person_id(minor_res),
        ),
        dict(key="operator", kind="operator", logins=["operator"], fhir_user=None, name="Opérateur DMP"),
    ]
    rows = []
    for spec in wanted:
        key = spec.pop("key")
        logins = [x for x in spec.pop("logins") if x]
        existing = find_account(store, logins[0])
        if existing is None:
            professions = (
                professions_from_roles(services, spec["fhir_user"]) if spec["kind"] == "practitioner" else []
            )
            create_account(
                store, logins=logins, password=DEMO_PASSWORDS[key], professions=professions, **spec
            )
        rows.append(
            {
                "role": key,
                "login": logins[0],
                "password": DEMO_PASSWORDS[key],
                "fhirUser": spec.get("fhir_user"),
                "name": spec["name"],
            }
        )
    if store.clients.find_one({"_id": DEMO_CLIENT_ID}) is None:
        create_client(
            store,
            {
                "client_name": "Application de démonstration DMP",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": DEMO_REDIRECTS,
                "scope": "openid fhirUser profile launch launch/patient offline_access online_access "
                "patient/*.cruds user/*.cruds patient/*.read patient/*.write user/*.read user/*.write",
            },
            client_id=DEMO_CLIENT_ID,
        )
    rows.append(
        {
            "role": "client",
            "login": DEMO_CLIENT_ID,
            "password": "(public client, PKCE)",
            "fhirUser": None,
            "name": "redirect_uris: " + " ".join(DEMO_REDIRECTS),
        }
    )
    return rows
