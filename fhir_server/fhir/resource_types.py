"""The registry of resource types the server stores and the interactions each one supports.

Routing, the interaction layer and the CapabilityStatement all read this table, so what the
server says it does and what it does cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTANCE_READ = ("read", "vread", "history-instance")
FULL_CRUD = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
READ_ONLY = ("read", "vread", "history-instance", "search-type")


PROFILE_BASE = "https://dmp-fhir.github.io/ig/StructureDefinition/"


def _profile(sd_id: str) -> str:
    return PROFILE_BASE + sd_id


@dataclass(frozen=True)
class ResourceType:
    name: str
    interactions: tuple[str, ...] = FULL_CRUD
    documentation: str = ""
    # The DMP profile (profiles/structuredefinitions) every write of this type is validated against.
    profile: str | None = None

    def supports(self, interaction: str) -> bool:
        return interaction in self.interactions


RESOURCE_TYPES: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType("Patient", documentation="DMP holder, identified by the INS (NIR/NIA).", profile=_profile("dmp-patient")),
        ResourceType("Practitioner", documentation="Health professional, identified by RPPS / IDNPS."),
        ResourceType("PractitionerRole", documentation="Profession (TRE_G15) and specialty (TRE_R38)."),
        ResourceType("Organization"),
        ResourceType("RelatedPerson", documentation="Legal representative, trusted person, caregiver."),
        ResourceType(
            "DocumentReference",
            documentation="DMP document metadata (IHE MHD / ANS PDSm). ITI-67 searches name the patient "
            "(patient or patient.identifier) and the status; archived documents leave default searches.",
            profile=_profile("dmp-documentreference"),
        ),
        ResourceType("Binary", documentation="Document content; served raw when the client asks for it."),
        ResourceType("List", documentation="Submission sets and folders (IHE MHD)."),
        ResourceType("Consent", documentation="The patient's authorisations, blocks and objections.", profile=_profile("dmp-consent")),
        # No type-level history: it would show every owner's versions (and their channel headers).
        ResourceType(
            "Subscription",
            tuple(i for i in FULL_CRUD if i != "history-type"),
            documentation="R4 rest-hook notifications (criteria: a search of one type); seen and changed by "
            "the client and user that created it only; notified only of what that subscriber may read.",
        ),
        # Only the server writes audit events: clients may read and search them, never change them.
        ResourceType("AuditEvent", READ_ONLY, documentation="Access trail, written by the server only.",
                     profile=_profile("dmp-auditevent")),
    )
}


def get_resource_type(name: str) -> ResourceType | None:
    return RESOURCE_TYPES.get(name)
