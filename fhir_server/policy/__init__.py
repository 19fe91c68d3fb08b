"""Access decisions: SMART scopes x the DMP rules (see policy.access)."""

from __future__ import annotations

from fhir_server.auth.principal import Principal
from fhir_server.auth.scopes import ScopeSet


def operator_principal(client_id: str) -> Principal:
    """The server operator (CLI tools, open mode): sees and writes everything, still audited."""
    return Principal(kind="operator", fhir_user=None, patient=None, scopes=ScopeSet.parse("system/*.cruds"), client_id=client_id)
