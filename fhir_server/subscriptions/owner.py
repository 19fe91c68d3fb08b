"""Who owns a subscription, kept server-side so that its notifications are decided with that
principal's rights at delivery time (the rights of the token that last wrote the subscription).

The owner is the pair (client, user): two patients of one app, or two clients of one professional,
never see each other's subscriptions. The operator sees them all.
"""

from __future__ import annotations

from pymongo.database import Database

from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import ScopeSet


def owner_key(principal: Principal) -> str:
    return f"{principal.kind}|{principal.client_id}|{principal.fhir_user or ''}"


def snapshot(principal: Principal) -> dict:
    """What the policy needs to rebuild the principal later (no token, no network address)."""
    return {
        "key": owner_key(principal),
        "kind": principal.kind,
        "client_id": principal.client_id,
        "fhir_user": principal.fhir_user,
        "patient": principal.patient,
        "scopes": str(principal.scopes),
        "purpose_of_use": list(principal.purpose_of_use),
        # objects, not pairs: FerretDB stores no nested arrays
        "professions": [{"system": system, "code": code} for system, code in principal.professions],
        "break_the_glass_reason": principal.break_the_glass_reason,
        "granted_at": principal.granted_at,
    }


def principal_of(owner: dict) -> Principal:
    return Principal(
        kind=owner["kind"],
        fhir_user=owner.get("fhir_user"),
        patient=owner.get("patient"),
        scopes=ScopeSet.parse(owner.get("scopes") or ""),
        client_id=owner["client_id"],
        purpose_of_use=tuple(owner.get("purpose_of_use") or ()),
        professions=tuple((p["system"], p["code"]) for p in owner.get("professions") or ()),
        break_the_glass_reason=owner.get("break_the_glass_reason"),
        granted_at=owner.get("granted_at"),
    )


def owned_subscriptions(db: Database, principal: Principal) -> list[str]:
    """Storage keys ("Subscription/<id>") of the subscriptions this principal owns."""
    from fhir_server.storage.documents import collection
    from fhir_server.subscriptions.store import SubscriptionRecord

    records = collection(db, SubscriptionRecord).find({"owner.key": owner_key(principal)}, {"_id": 1})
    return sorted(r["_id"] for r in records)
