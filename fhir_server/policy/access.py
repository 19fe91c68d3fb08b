"""The access policy: the one place that decides what a caller may see and do.

Every decision is expressed as a MongoDB filter over the stored resource documents (`read_filter`),
so that search, paging, `_total`, `_summary=count`, `_sort`, chains, `_has` and includes never see
what the caller may not; a single resource leaving the server by read, vread, history or a
transaction response is checked by evaluating the very same filter on its document in process
(mongomock's matcher), so a search and a read can never disagree.

Layers, each able only to narrow the previous one:
1. SMART scopes (the token): interaction letters per type, patient-level confinement to the
   compartment of the patient in context, v2 `?param=value` restrictions.
2. DMP rules (the law and the patient's choices): closed record, blocked professional, explicit
   authorisation / médecin traitant, authorisation matrix, masking labels, emergency access.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mongomock.filtering import filter_applies

from fhir_server.fhir.errors import FhirError
from fhir_server.policy.matrix import AuthorisationMatrix
from fhir_server.search.registry import PATIENT_COMPARTMENT

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.auth.principal import Principal
    from fhir_server.search.engine import SearchEngine
    from fhir_server.storage.repository import Repository

log = logging.getLogger(__name__)

TRE_A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
from fhir_server.fhir.documents import TRE_A05, check_patient_upload, decode  # noqa: E402
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MASQUE_PS = f"security-label|{TRE_A07}|MASQUE_PS"
INVISIBLE_PATIENT = f"security-label|{TRE_A07}|INVISIBLE_PATIENT"
INVISIBLE_REPRESENTANTS = f"security-label|{TRE_A07}|INVISIBLE_REPRESENTANTS_LEGAUX"
ARCHIVED_EXTENSION = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
# Emergency access (break-the-glass, Centre 15) lasts this long after the professional logged in.
EMERGENCY_WINDOW = timedelta(hours=1)
# INVISIBLE_PATIENT lapses one month after the document was added (R1111-53 area).
INVISIBLE_PATIENT_DELAY = timedelta(days=30)

# The patient's default for new documents: a Consent whose policyRule carries this code asks that
# every document added to the record be masked from professionals (MASQUE_PS) from the start.
DEFAULT_MASKING_RULE = ("https://github.com/dmp-fhir/CodeSystem/dmp-patient-preference", "default-masque-ps")

NOTHING: dict = {"_id": {"$in": []}}
INTERACTION_LETTER = {
    "read": "r", "vread": "r", "history-instance": "r",
    "search-type": "s", "history-type": "s", "search-system": "s", "history-system": "s",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
}
DIRECTORY_TYPES = ("Practitioner", "PractitionerRole", "Organization")
EMERGENCY_PURPOSES = ("BTG", "ETREAT")
# Fields a DocumentReference may change after creation (ANS PDSm: status, securityLabel, isArchived).
MUTABLE_DOCUMENT_FIELDS = ("status", "securityLabel", "extension", "meta", "id", "resourceType")


def _and(*parts: dict) -> dict:
    parts = tuple(p for p in parts if p)
    if not parts:
        return {}
    if any(p is NOTHING or p == NOTHING for p in parts):
        return NOTHING
    return parts[0] if len(parts) == 1 else {"$and": list(parts)}


def forbidden(message: str, rule: str) -> FhirError:
    return FhirError(403, message, "forbidden", headers={"X-DMP-Policy-Rule": rule})


@dataclass
class Decision:
    allowed: bool
    rule: str
    reason: str = ""


class AccessPolicy:
    """Built once per app; `for_principal` gives the per-request view with its caches."""

    def __init__(self, repository: "Repository", engine: "SearchEngine", matrix: AuthorisationMatrix, clock=None):
        self.repository = repository
        self.engine = engine
        self.matrix = matrix
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def for_principal(self, principal: "Principal") -> "RequestAccess":
        return RequestAccess(self, principal)


@dataclass
class RequestAccess:
    policy: AccessPolicy
    principal: "Principal"
    decisions: list[Decision] = field(default_factory=list)
    _filters: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    def _deny(self, message: str, rule: str) -> FhirError:
        """A 403 whose rule is remembered for the audit trail."""
        self.decisions.append(Decision(False, rule, message))
        return forbidden(message, rule)

    # ------------------------------------------------------------------ who
    @property
    def kind(self) -> str:
        return self.principal.kind

    @property
    def user_ref(self) -> str | None:
        return self.principal.fhir_user

    @property
    def own_patient(self) -> str | None:
        """The patient whose record a patient or legal representative acts on."""
        if self.kind == "patient":
            if self.principal.patient:
                return self.principal.patient
            if self.user_ref and self.user_ref.startswith("Patient/"):
                return self.user_ref.split("/", 1)[1]
        if self.kind == "related-person":
            return self.principal.patient
        return None

    @property
    def emergency(self) -> bool:
        """An emergency purpose, within the time limit of emergency access."""
        if not any(p in EMERGENCY_PURPOSES for p in self.principal.purpose_of_use):
            return False
        granted = self.principal.granted_at
        if granted is None:
            return False
        started = datetime.fromtimestamp(granted, timezone.utc)
        return self.policy.clock() - started <= EMERGENCY_WINDOW

    # ------------------------------------------------------------------ scopes
    def require(self, resource_type: str, interaction: str) -> None:
        """403 unless the token's scopes grant this interaction on this type."""
        letter = INTERACTION_LETTER[interaction]
        if self.kind == "operator":
            return
        if not self.principal.scopes.allows(resource_type, letter):
            raise self._deny(
                f"The access token does not grant '{letter}' on {resource_type} (scopes: {self.principal.scopes}).",
                "scope",
            )
        if interaction in ("history-type", "history-system") and self.kind not in ("system", "operator"):
            raise self._deny("Type and system history are for system clients only.", "history")

    def _scope_filter(self, resource_type: str, letter: str) -> dict:
        scopes = self.principal.scopes
        if self.kind == "operator":
            return {}
        level = scopes.context_level(resource_type, letter)
        if level is None:
            return NOTHING
        parts = []
        if level == "patient" and resource_type not in DIRECTORY_TYPES:
            patient = self.principal.patient or (self.own_patient if self.kind == "patient" else None)
            if not patient:
                return NOTHING  # a patient-level grant needs a patient in context
            if resource_type in PATIENT_COMPARTMENT:
                parts.append({"comp": f"Patient/{patient}"})
        restrictions = scopes.restrictions(resource_type, letter, level)
        if restrictions:
            ors = []
            for conjunction in restrictions:
                ors.append(_and(*[self.policy.engine.criterion(resource_type, p, v) for p, v in conjunction]))
            parts.append({"$or": ors} if len(ors) > 1 else ors[0])
        return _and(*parts)

    # ------------------------------------------------------------------ read filter
    def read_filter(self, resource_type: str, letter: str = "s") -> dict:
        """The MongoDB filter of what this caller may see of a type ({} = everything)."""
        key = (resource_type, letter)
        if key not in self._filters:
            scope = self._scope_filter(resource_type, letter)
            dmp = NOTHING if scope == NOTHING else self._dmp_filter(resource_type)
            self._filters[key] = _and(scope, dmp)
        return self._filters[key]

    def visible(self, doc: dict, letter: str = "r") -> bool:
        """Whether one stored document passes this caller's read filter (same rules as search)."""
        rule = self.read_filter(doc["rt"], letter)
        allowed = rule != NOTHING and (not rule or filter_applies(rule, doc))
        if not allowed:
            self.decisions.append(Decision(False, "read", f"{doc['_id']} hidden"))
        return allowed

    def invalidate(self, resource_type: str) -> None:
        """Forget the cached filters of a type whose visibility this request has just changed."""
        self._filters = {k: v for k, v in self._filters.items() if k[0] != resource_type}
        self._cache.pop(resource_type, None)

    def _dmp_filter(self, resource_type: str) -> dict:
        kind = self.kind
        if kind == "operator":
            return {}
        if resource_type == "Subscription":
            return self._subscription_filter()
        if kind == "system":
            if resource_type == "Binary":
                return self._binary_filter()
            return self._closed_records_excluded(resource_type)
        if kind in ("patient", "related-person"):
            return self._holder_filter(resource_type)
        if kind == "practitioner":
            return self._professional_filter(resource_type)
        return NOTHING

    # ------------------------------------------------------------------ the holder and their representatives
    def _holder_filter(self, resource_type: str) -> dict:
        patient = self.own_patient
        if not patient or not self._acting_for_allowed(patient):
            return NOTHING
        if self._patient_closed(patient):
            return NOTHING  # a closed record is read through a data-access request, not the API
        if resource_type in DIRECTORY_TYPES:
            return {}
        if resource_type == "Binary":
            return self._binary_filter()
        if resource_type not in PATIENT_COMPARTMENT:
            return NOTHING
        parts: list[dict] = [{"comp": f"Patient/{patient}"}]
        if resource_type == "AuditEvent":
            parts.append({"ix.tk": "type|*|rest"})  # who accessed the record, not security internals
        if resource_type == "DocumentReference":
            lapse = self.policy.clock() - INVISIBLE_PATIENT_DELAY
            parts.append({"$or": [{"ix.tk": {"$nin": [INVISIBLE_PATIENT]}}, {"cts": {"$lt": lapse}}]})
            if self.kind == "related-person":
                parts.append({"ix.tk": {"$nin": [INVISIBLE_REPRESENTANTS]}})
        return _and(*parts)

    def _acting_for_allowed(self, patient: str) -> bool:
        if self.kind == "patient":
            return True
        # a legal representative: a RelatedPerson of the child with the GUARD role
        ref = self.user_ref or ""
        if not ref.startswith("RelatedPerson/"):
            return False
        doc = self.policy.repository.resources.find_one({"_id": ref}, {"res": 1, "state": 1})
        if not doc or doc.get("state") != "live":
            return False
        res = doc["res"]
        is_guard = any(
            c.get("code") == "GUARD" for rel in res.get("relationship", []) for c in rel.get("coding", [])
        )
        return is_guard and (res.get("patient") or {}).get("reference") == f"Patient/{patient}"

    # ------------------------------------------------------------------ professionals
    def _professional_filter(self, resource_type: str) -> dict:
        me = self.user_ref
        if not me or not me.startswith("Practitioner/"):
            return NOTHING
        if resource_type in DIRECTORY_TYPES:
            return {}
        if resource_type == "Patient":
            # demographics (identity check, TD0.2): any open record; documents stay consent-gated
            return {"_id": {"$nin": [f"Patient/{p}" for p in self._closed_patients()]}}
        if resource_type == "AuditEvent":
            return NOTHING
        if resource_type == "Consent":
            return {"ix.rf": f"actor|{me}"}  # their own authorisation status, nothing of others
        if resource_type == "Binary":
            return self._binary_filter()
        if resource_type not in PATIENT_COMPARTMENT:
            return NOTHING
        patients = self._authorised_patients()
        parts: list[dict] = [{"comp": {"$in": [f"Patient/{p}" for p in sorted(patients)]}}]
        if resource_type == "DocumentReference":
            rule = self.policy.matrix.rule_for(self.principal.professions)
            keys = [f"type|*|{code}" for code in sorted(rule.types)]
            parts.append({"ix.tk": {"$nin": keys}} if rule.rule == "all-except" else {"ix.tk": {"$in": keys}})
            see_masked = set(self._gp_patients())
            if self.emergency:
                see_masked |= self._consents()["masked_in_emergency"]
            parts.append(
                {
                    "$or": [
                        {"ix.tk": {"$nin": [MASQUE_PS]}},
                        {"ix.rf": f"author|{me}"},
                        {"comp": {"$in": [f"Patient/{p}" for p in sorted(see_masked)]}},
                    ]
                }
            )
        return _and(*parts)

    def _authorised_patients(self) -> set[str]:
        if "authorised" not in self._cache:
            consents = self._consents()
            closed = set(self._closed_patients())
            if self.emergency:
                purposes = set(self.principal.purpose_of_use) & set(EMERGENCY_PURPOSES)
                everyone = {d["rid"] for d in self.policy.repository.find_docs({"rt": "Patient", "state": "live"}, {"rid": 1})}
                objectors = set().union(*[consents["objections"].get(p, set()) for p in purposes])
                allowed = everyone - objectors
            else:
                allowed = consents["permit"] | set(self._gp_patients())
            self._cache["authorised"] = allowed - consents["blocked"] - closed
        return self._cache["authorised"]

    def _gp_patients(self) -> list[str]:
        return self._facts()["gp"]

    def _consents(self) -> dict:
        """The active Consents that concern this professional, and the patients' emergency objections."""
        return self._facts()["consents"]

    def _facts(self) -> dict:
        """Everything the DMP rules need to know about this caller, in one query (one round trip):
        closed records, the patients whose GP they are, the Consents naming them and, in an
        emergency, the patients' objections and masked-document permissions."""
        if "facts" in self._cache:
            return self._cache["facts"]
        branches: list[dict] = [{"rt": "Patient", "ix.tk": "active|*|false"}]
        me = self.user_ref if self.kind == "practitioner" else None
        if me:
            branches.append({"rt": "Patient", "ix.rf": f"general-practitioner|{me}"})
            branches.append({"rt": "Consent", "ix.tk": "status|*|active", "ix.rf": f"actor|{me}"})
            if self.emergency:
                branches.append(
                    {"rt": "Consent", "ix.tk": {"$all": ["status|*|active"],
                     "$in": [f"purpose|{ACT_REASON}|{p}" for p in EMERGENCY_PURPOSES]}}
                )
        query = {"state": "live", "$or": branches}
        docs = list(self.policy.repository.find_docs(query, {"rt": 1, "rid": 1, "res": 1, "ix.tk": 1, "ix.rf": 1}))
        now = self.policy.clock()
        consents = {"permit": set(), "blocked": set(), "objections": {}, "masked_in_emergency": set()}
        facts = {"closed": [], "gp": [], "consents": consents}
        for doc in docs:
            keys = (doc.get("ix") or {})
            if doc["rt"] == "Patient":
                if "active|*|false" in keys.get("tk", []):
                    facts["closed"].append(doc["rid"])
                if me and f"general-practitioner|{me}" in keys.get("rf", []):
                    facts["gp"].append(doc["rid"])
                continue
            provision, patient = _provision(doc["res"])
            if not patient or not _in_period(provision, now) or doc["res"].get("status") != "active":
                continue
            if f"actor|{me}" in keys.get("rf", []):
                if provision.get("type") == "deny":
                    consents["blocked"].add(patient)  # a block wins over everything, emergencies included
                elif provision.get("type") == "permit":
                    consents["permit"].add(patient)
            if self.emergency and not provision.get("actor"):
                purposes = {c.get("code") for c in provision.get("purpose", [])}
                labels = {c.get("code") for c in provision.get("securityLabel", [])}
                if provision.get("type") == "deny":
                    for purpose in purposes & set(EMERGENCY_PURPOSES):
                        consents["objections"].setdefault(purpose, set()).add(patient)
                if provision.get("type") == "permit" and "MASQUE_PS" in labels:
                    consents["masked_in_emergency"].add(patient)
        self._cache["facts"] = facts
        return facts

    # ------------------------------------------------------------------ subscriptions
    def _subscription_filter(self) -> dict:
        """A subscription is seen, and so changed, by its owner only (the client and user that
        created it; system clients included: its headers may carry the endpoint's credentials)."""
        if "Subscription" not in self._cache:
            from fhir_server.subscriptions.owner import owned_subscriptions

            self._cache["Subscription"] = owned_subscriptions(self.policy.repository.db, self.principal)
        return {"_id": {"$in": self._cache["Subscription"]}}

    # ------------------------------------------------------------------ shared rules
    def _closed_patients(self) -> list[str]:
        return self._facts()["closed"]

    def _patient_closed(self, patient: str) -> bool:
        return patient in self._closed_patients()

    def _closed_records_excluded(self, resource_type: str) -> dict:
        closed = self._closed_patients()
        if not closed or resource_type not in PATIENT_COMPARTMENT:
            return {}
        return {"comp": {"$nin": [f"Patient/{p}" for p in closed]}}

    def _binary_filter(self) -> dict:
        """A Binary is visible only through a DocumentReference the caller may see that points to it."""
        if "binaries" not in self._cache:
            documents = self.read_filter("DocumentReference", "r")
            ids: set[str] = set()
            if documents != NOTHING:
                query = _and({"rt": "DocumentReference", "state": "live"}, documents)
                for doc in self.policy.repository.find_docs(query, {"res.content": 1}):
                    for content in (doc.get("res") or {}).get("content", []):
                        url = (content.get("attachment") or {}).get("url") or ""
                        if url.startswith("Binary/"):
                            ids.add(url)
            self._cache["binaries"] = sorted(ids)
        return {"_id": {"$in": self._cache["binaries"]}}

    # ------------------------------------------------------------------ writes
    def apply_patient_defaults(self, resource_type: str, resource: dict, wishes: dict | None = None) -> dict:
        """A new DocumentReference takes the patient's default masking, if they asked for one.
        `wishes` memoises the answer per patient where every read sees the same state (the
        entries of one transaction); elsewhere an earlier write may just have changed it."""
        if resource_type != "DocumentReference":
            return resource
        patient = _patient_of(self.policy, resource_type, resource)
        if not patient:
            return resource
        wishes = {} if wishes is None else wishes
        if patient not in wishes:
            wishes[patient] = self._wants_default_masking(patient)
        wants_masking = wishes[patient]
        labels = resource.get("securityLabel") or []
        already = any(c.get("code") == "MASQUE_PS" for label in labels for c in label.get("coding", []))
        if not wants_masking or already:
            return resource
        resource = dict(resource)
        resource["securityLabel"] = [*labels, {"coding": [{"system": TRE_A07, "code": "MASQUE_PS"}]}]
        self.decisions.append(Decision(True, "default-masking", "masked as the patient asked for new documents"))
        return resource

    def _wants_default_masking(self, patient: str) -> bool:
        """Whether the patient's active Consents ask to mask new documents."""
        system, code = DEFAULT_MASKING_RULE
        query = {"rt": "Consent", "state": "live", "comp": f"Patient/{patient}", "ix.tk": "status|*|active"}
        return any(
            any(c.get("system") == system and c.get("code") == code
                for c in (doc["res"].get("policyRule") or {}).get("coding", []))
            for doc in self.policy.repository.find_docs(query, {"res.policyRule": 1})
        )

    def check_write(self, interaction: str, resource_type: str, new: dict | None, current_doc: dict | None) -> None:
        """403 (or 405) unless this caller may make this change. `new` is None for a delete."""
        self.require(resource_type, interaction)
        if self.kind == "operator":
            return
        letter = INTERACTION_LETTER[interaction]
        if current_doc is not None and not self.visible(current_doc, "r"):
            raise FhirError(404, f"{resource_type}/{current_doc['rid']} is not known.", "not-found")
        if resource_type == "AuditEvent":
            raise FhirError(405, "Audit events are written by the server only.", "not-supported")
        patient = _patient_of(self.policy, resource_type, new) if new is not None else None
        if patient is None and current_doc is not None:
            patient = _compartment_patient(current_doc)
        level = self.principal.scopes.context_level(resource_type, letter)
        if level == "patient" and resource_type in PATIENT_COMPARTMENT:
            in_context = self.principal.patient or self.own_patient
            if patient != in_context:
                raise self._deny("A patient-level token writes only in the record of the patient in context.", "scope")
        if patient and self._patient_closed(patient) and resource_type != "Patient":
            raise self._deny("This DMP is closed: no new document or change can be added.", "closed-record")
        if self.kind == "system":
            if resource_type == "DocumentReference" and current_doc is not None and new is not None:
                _only_pdsm_mutable_changed(current_doc["res"], new)  # PDSm binds every producer
            return
        if resource_type == "DocumentReference" and new is not None and is_reimbursement_data(new):
            raise self._deny("Reimbursement data (REMB, class 60) is fed by the Assurance Maladie's system "
                             "client only.", "reimbursement-by-system")
        if resource_type == "Subscription" and self.kind in ("patient", "related-person", "practitioner"):
            return  # their own only: an existing one is visible to its owner alone (checked above)
        if self.kind in ("patient", "related-person"):
            self._check_holder_write(resource_type, new, current_doc, patient)
        elif self.kind == "practitioner":
            self._check_professional_write(resource_type, new, current_doc, patient)
        else:
            raise self._deny("This caller may not write.", "default-deny")

    def _check_holder_write(self, resource_type, new, current_doc, patient) -> None:
        own = self.own_patient
        if resource_type in ("Consent", "DocumentReference", "Binary", "List") and (
            patient in (own, None) or resource_type == "Binary"
        ):
            if resource_type == "DocumentReference" and current_doc is not None:
                authored = _author_refs(current_doc.get("res") or {})
                if f"Patient/{own}" not in authored:
                    if new is None:
                        raise self._deny("Only the author of a document may delete it.", "author-only-delete")
                    _only_labels_changed(current_doc["res"], new)
            if resource_type == "Binary" and new is not None:
                # whatever path the bytes take (ITI-105, a transaction, POST Binary), a patient's
                # content is an upload: an accepted type, as its bytes show, within the size limit
                check_patient_upload(new.get("contentType"), decode(new.get("data") or "", "Binary.data"), "Binary.data")
            return
        raise self._deny(f"A patient may not write {resource_type} resources here.", "holder-write")

    def _check_professional_write(self, resource_type, new, current_doc, patient) -> None:
        me = self.user_ref
        if resource_type == "Consent":
            raise self._deny("Only the patient manages their authorisations.", "consent-by-patient")
        if patient:
            if patient in self._consents()["blocked"]:
                raise self._deny("The patient has blocked your access to their DMP.", "blocked")
            self.decisions.append(Decision(True, "treating-professional", "writes allowed unless blocked"))
        if resource_type == "DocumentReference" and current_doc is not None:
            if new is None and me not in _author_refs(current_doc.get("res") or {}):
                raise self._deny("Only the author of a document may delete it.", "author-only-delete")
            if new is not None:
                _only_pdsm_mutable_changed(current_doc["res"], new)


# ---------------------------------------------------------------------- helpers
def is_reimbursement_data(document: dict) -> bool:
    """Type REMB (TRE_A05) or class 60 (TRE_A03): the reimbursement history the CNAM feeds."""
    codes = {(c.get("system"), c.get("code")) for c in (document.get("type") or {}).get("coding", [])}
    classes = {(c.get("system"), c.get("code")) for cat in document.get("category") or [] for c in cat.get("coding", [])}
    return (TRE_A05, "REMB") in codes or (TRE_A03, "60") in classes


def _provision(consent: dict) -> tuple[dict, str | None]:
    ref = (consent.get("patient") or {}).get("reference") or ""
    patient = ref.split("/", 1)[1] if ref.startswith("Patient/") else None
    return consent.get("provision") or {}, patient


def _in_period(provision: dict, now: datetime) -> bool:
    from fhir_server.search.dates import DateFormatError, date_range

    period = provision.get("period") or {}
    try:
        if period.get("start") and date_range(period["start"])[0] > now:
            return False
        if period.get("end") and date_range(period["end"])[1] < now:
            return False
    except DateFormatError:
        return False
    return True


def _patient_of(policy: AccessPolicy, resource_type: str, resource: dict) -> str | None:
    if resource_type == "Patient":
        return resource.get("id")
    _, comps, _ = policy.repository.indexer(resource)
    patients = [c.split("/", 1)[1] for c in comps if c.startswith("Patient/")]
    return patients[0] if patients else None


def _compartment_patient(doc: dict) -> str | None:
    for comp in doc.get("comp") or []:
        if comp.startswith("Patient/"):
            return comp.split("/", 1)[1]
    return None


def _author_refs(resource: dict) -> set[str]:
    return {a.get("reference") for a in resource.get("author", []) if isinstance(a, dict)}


def _strip(resource: dict, keep_out: tuple[str, ...]) -> dict:
    return {k: v for k, v in resource.items() if k not in keep_out}


def _only_pdsm_mutable_changed(before: dict, after: dict) -> None:
    ignore = ("meta", "status", "securityLabel")
    b, a = _strip(before, ignore), _strip(after, ignore)
    b_ext = [e for e in b.pop("extension", []) if e.get("url") != ARCHIVED_EXTENSION]
    a_ext = [e for e in a.pop("extension", []) if e.get("url") != ARCHIVED_EXTENSION]
    if b != a or b_ext != a_ext:
        raise FhirError(
            405,
            "After creation a DocumentReference changes only its status, securityLabel and archive flag "
            "(ANS PDSm); send a replacement document for anything else.",
            "not-supported",
        )


def _only_labels_changed(before: dict, after: dict) -> None:
    if _strip(before, ("meta", "securityLabel")) != _strip(after, ("meta", "securityLabel")):
        raise forbidden(
            "A document added by a professional can only be masked or unmasked by the patient.", "holder-write"
        )


__all__ = ["AccessPolicy", "RequestAccess", "Decision", "NOTHING"]
