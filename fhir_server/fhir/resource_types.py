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


@dataclass(frozen=True)
class ResourceType:
    name: str
    interactions: tuple[str, ...] = FULL_CRUD
    documentation: str = ""

    def supports(self, interaction: str) -> bool:
        return interaction in self.interactions


RESOURCE_TYPES: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (
        ResourceType("Patient", documentation="DMP holder, identified by the INS (NIR/NIA)."),
        ResourceType("Practitioner", documentation="Health professional, identified by RPPS / IDNPS."),
        ResourceType("PractitionerRole", documentation="Profession (TRE_G15) and specialty (TRE_R38)."),
        ResourceType("Organization"),
        ResourceType("RelatedPerson", documentation="Legal representative, trusted person, caregiver."),
        ResourceType("DocumentReference", documentation="DMP document metadata (IHE MHD / ANS PDSm)."),
        ResourceType("Binary", documentation="Document content; served raw when the client asks for it."),
        ResourceType("List", documentation="Submission sets and folders (IHE MHD)."),
        ResourceType("Consent", documentation="The patient's authorisations, blocks and objections."),
        # Only the server writes audit events: clients may read and search them, never change them.
        ResourceType("AuditEvent", READ_ONLY, documentation="Access trail, written by the server only."),
    )
}


def get_resource_type(name: str) -> ResourceType | None:
    return RESOURCE_TYPES.get(name)
