"""The CapabilityStatement, generated from the registries that route and answer requests."""

from __future__ import annotations

from fhir_server import SOFTWARE_NAME, __version__
from fhir_server.config import Settings
from fhir_server.fhir.profiles import conformance_resources, profiles_for
from fhir_server.fhir.resource_types import RESOURCE_TYPES
from fhir_server.interactions.conformance import CONFORMANCE_TYPES, SEARCH_PARAMS
from fhir_server.search.registry import load_registry

RELEASE_DATE = "2026-11-26"
TYPE_INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create", "search-type")


def capability_statement(base_url: str, settings: Settings) -> dict:
    registry = load_registry()
    resources = []
    for rt in RESOURCE_TYPES.values():
        params = registry.params_for(rt.name)
        entry: dict = {
            "type": rt.name,
            "documentation": rt.documentation or None,
            "interaction": [{"code": code} for code in TYPE_INTERACTIONS if rt.supports(code)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": rt.supports("update"),
            "conditionalCreate": rt.supports("create"),
            "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since answer 304
            "conditionalUpdate": rt.supports("update"),
            "conditionalDelete": "single" if rt.supports("delete") else "not-supported",
            "referencePolicy": ["literal", "logical", "local"],
            "searchInclude": sorted(
                {f"{rt.name}:{p.code}" for p in params.values() if p.type == "reference"} | {"*"}
            ),
            "searchRevInclude": sorted(
                {
                    f"{other}:{p.code}"
                    for other in RESOURCE_TYPES
                    for p in registry.params_for(other).values()
                    if p.type == "reference" and (not p.target or rt.name in p.target)
                }
            ),
            "searchParam": [
                {"name": p.code, "definition": p.url or None, "type": p.type, "documentation": p.description or None}
                for p in sorted(params.values(), key=lambda p: p.code)
                if p.type != "composite"
            ],
        }
        sds = profiles_for(rt.name)
        entry["profile"] = rt.profile
        entry["supportedProfile"] = [sd["url"] for sd in sds] or None
        resources.append(_prune(entry))
    for kind in CONFORMANCE_TYPES:
        resources.append({
            "type": kind,
            "documentation": "Shipped with the server (profiles/), read-only and readable without a token.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "url", "definition": SEARCH_PARAMS["url"], "type": "uri"}],
        })
    return {
        "resourceType": "CapabilityStatement",
        "id": "dmp-fhir-server",
        "url": f"{base_url}/metadata",
        "name": "DMPFHIRServer",
        "title": "FHIR R4 server for the French Dossier Médical Partagé",
        "status": "active",
        "experimental": False,
        "date": RELEASE_DATE,
        "publisher": "dmp-fhir contributors",
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": __version__},
        "implementation": {"description": "DMP FHIR server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "JSON only. Search parameters, includes and interactions are listed per type.",
                "resource": resources,
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "search-system"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
                    {
                        "name": "_lastUpdated",
                        "type": "date",
                        "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
                    },
                ],
                "operation": [
                    {"name": op["code"], "definition": op["url"]}
                    for op in sorted(conformance_resources("OperationDefinition").values(), key=lambda o: o["code"])
                ],
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
                "security": _security(base_url),
            }
        ],
    }


OAUTH_URIS_SUBEXTENSIONS = ("authorize", "token", "register", "manage")


def _security(base_url: str) -> dict:
    from fhir_server.auth import smart_urls

    urls = smart_urls(base_url)
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}
                ],
                "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                # Only the sub-extensions that oauth-uris defines (FHIR R4: authorize, token, register,
                # manage); the HL7 validator rejects any other. revoke and introspect are advertised in
                # .well-known/smart-configuration.
                "extension": [
                    {"url": name, "valueUri": url}
                    for name, url in urls.items()
                    if url and name in OAUTH_URIS_SUBEXTENSIONS
                ],
            }
        ],
        "description": "SMART App Launch 2.x (1.0 scopes understood); every answer is decided by the token's "
        "scopes and the DMP access policy. Discovery: .well-known/smart-configuration.",
    }


def _prune(value):
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value
