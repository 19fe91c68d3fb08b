"""The authorization server's own reads and writes of FHIR resources (demo accounts, patient picker).

They run as the operator through the access policy when the app has one (services.policy), and
straight on the repository otherwise.
"""

from __future__ import annotations

from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import ScopeSet
from fhir_server.interactions.context import RequestContext

INTERNAL = Principal(
    kind="operator",
    fhir_user=None,
    patient=None,
    scopes=ScopeSet.parse("system/*.cruds"),
    client_id="dmp-auth-internal",
)


def _policy(services):
    for name in ("policy", "access_policy", "access"):
        candidate = getattr(services, name, None)
        if candidate is not None and hasattr(candidate, "for_principal"):
            return candidate
    return None


def internal_context(services, base_url: str) -> RequestContext:
    ctx = RequestContext(base_url=base_url.rstrip("/"))
    policy = _policy(services)
    if policy is not None:
        ctx.access = policy.for_principal(INTERNAL)
    return ctx


def create_resource(services, base_url: str, resource: dict) -> dict:
    """Create a resource; returns it with its id."""
    if (
        _policy(services) is not None
        or not hasattr(RequestContext, "__dataclass_fields__")
        or "access" not in RequestContext.__dataclass_fields__
    ):
        ctx = internal_context(services, base_url)
        return services.resources.create(ctx, resource["resourceType"], resource).resource
    return services.repository.create(dict(resource)).resource


def search_resources(
    services, base_url: str, resource_type: str, params: list[tuple[str, str]]
) -> list[dict]:
    ctx = internal_context(services, base_url)
    if "access" in getattr(RequestContext, "__dataclass_fields__", {}) and ctx.access is None:
        return []  # the interaction layer needs an access policy the app does not expose yet
    bundle = services.searches.search(ctx, resource_type, params, resource_type).resource or {}
    return [
        e.get("resource") or {}
        for e in bundle.get("entry") or []
        if (e.get("resource") or {}).get("resourceType") == resource_type
    ]
