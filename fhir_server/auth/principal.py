"""Who is calling: built from a verified access token, never from anything else the client sends."""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.auth.scopes import ScopeSet

KINDS = ("patient", "related-person", "practitioner", "system", "operator")


@dataclass(frozen=True)
class Principal:
    kind: str  # "patient" | "related-person" | "practitioner" | "system" | "operator"
    fhir_user: str | None  # "Patient/123", "Practitioner/abc", "RelatedPerson/x" (None for system clients)
    patient: str | None  # id (not "Patient/..") of the patient in launch context, when any
    scopes: ScopeSet
    client_id: str
    token_id: str | None = None  # jti
    purpose_of_use: tuple[str, ...] = ()  # ("TREAT",), ("BTG",), ("ETREAT",)
    professions: tuple[tuple[str, str], ...] = ()  # (system, code): TRE_G15 profession, TRE_R38 specialty
    break_the_glass_reason: str | None = None
    network_address: str | None = None
    granted_at: int | None = None  # epoch seconds of the login (auth_time) or of the token (iat)

    @property
    def is_break_the_glass(self) -> bool:
        return "BTG" in self.purpose_of_use


# Code systems of the French nomenclatures (ANS terminologies) used in the IUA claims.
TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
PURPOSE_OF_USE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES = ("TREAT", "ETREAT", "BTG")
