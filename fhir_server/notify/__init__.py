"""E-mail notifications to the patient (and their GP), derived from the audit stream.

Every access is already an AuditEvent; the notifier reads the ones that matter to a patient:
- a document added to their record (a successful create of a DocumentReference);
- an emergency access (break-the-glass or Centre 15) to their record: the patient and the GP;
- (`dmp-fhir notify invisible`) a document still hidden from them two weeks after it was added.
A notification never carries medical content: only that something happened and where to look.
Sending is asynchronous and best effort (a bounded queue and one worker thread), so a slow mail
server never delays or fails an access; failures are logged.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
from dataclasses import dataclass
from email.message import EmailMessage

log = logging.getLogger(__name__)

PORTAL = "Mon espace santé"


@dataclass(frozen=True)
class SmtpSettings:
    host: str | None = None
    port: int = 25
    sender: str = "dmp-notifications@localhost"

    @property
    def enabled(self) -> bool:
        return bool(self.host)


MESSAGES = {
    "document": (
        "Un nouveau document a été ajouté à votre dossier médical partagé",
        "Bonjour,\n\nUn nouveau document a été ajouté à votre dossier médical partagé.\n"
        f"Vous pouvez le consulter dans {PORTAL}.\n\nCe message ne contient aucune donnée de santé.\n",
    ),
    "emergency-patient": (
        "Accès en urgence à votre dossier médical partagé",
        "Bonjour,\n\nUn professionnel de santé a accédé à votre dossier médical partagé en situation d'urgence.\n"
        f"Le détail de cet accès figure dans l'historique des accès de {PORTAL}.\n\n"
        "Ce message ne contient aucune donnée de santé.\n",
    ),
    "emergency-gp": (
        "Accès en urgence au dossier d'un de vos patients",
        "Bonjour,\n\nUn accès en urgence a eu lieu au dossier médical partagé d'un patient dont vous êtes le "
        "médecin traitant. Consultez votre logiciel pour le détail.\n\nCe message ne contient aucune donnée de santé.\n",
    ),
    "invisible": (
        "Un document de votre dossier attend votre consultation d'annonce",
        "Bonjour,\n\nUn document de votre dossier médical partagé n'est pas encore visible pour vous : il le sera "
        "après votre consultation d'annonce, ou au plus tard un mois après son ajout.\n\n"
        "Ce message ne contient aucune donnée de santé.\n",
    ),
}


class Notifier:
    def __init__(self, repository, smtp: SmtpSettings, max_queue: int = 1000):
        self.repository = repository
        self.smtp = smtp
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ from the audit stream
    def on_audit_event(self, event: dict) -> None:
        if not self.smtp.enabled or event.get("outcome") != "0":
            return
        try:
            patients = [e["what"]["reference"] for e in event.get("entity", [])
                        if e.get("role", {}).get("code") == "1" and e.get("what", {}).get("reference", "").startswith("Patient/")]
            purposes = {c.get("code") for p in event.get("purposeOfEvent", []) for c in p.get("coding", [])}
            subtype = (event.get("subtype") or [{}])[0].get("code")
            created_documents = subtype == "create" and any(
                e.get("what", {}).get("reference", "").startswith("DocumentReference/") for e in event.get("entity", [])
            )
            for patient in patients:
                if created_documents:
                    self._to_patient(patient, "document")
                if purposes & {"BTG", "ETREAT"}:
                    self._to_patient(patient, "emergency-patient")
                    self._to_gp(patient, "emergency-gp")
        except Exception:  # a notification problem must never touch the access itself
            log.exception("notification skipped")

    def notify_invisible_documents(self, older_than) -> int:
        """Tell patients about documents still INVISIBLE_PATIENT two weeks after they were added (once each)."""
        from fhir_server.policy.access import INVISIBLE_PATIENT

        query = {"rt": "DocumentReference", "state": "live", "ix.tk": INVISIBLE_PATIENT,
                 "cts": {"$lt": older_than}, "notified_invisible": {"$exists": False}}
        count = 0
        for doc in self.repository.find_docs(query, {"comp": 1}):
            for patient in [c for c in doc.get("comp", []) if c.startswith("Patient/")]:
                self._to_patient(patient, "invisible")
                count += 1
            self.repository.resources.update_one({"_id": doc["_id"]}, {"$set": {"notified_invisible": True}})
        return count

    # ------------------------------------------------------------------ recipients
    def _email_of(self, reference: str) -> str | None:
        rt, _, rid = reference.partition("/")
        doc = self.repository.current_doc(rt, rid)
        if not doc or doc.get("state") != "live":
            return None
        for telecom in doc["res"].get("telecom", []):
            if telecom.get("system") == "email" and telecom.get("value"):
                return telecom["value"]
        return None

    def _to_patient(self, patient_ref: str, kind: str) -> None:
        address = self._email_of(patient_ref)
        if address:
            self._enqueue(address, kind)

    def _to_gp(self, patient_ref: str, kind: str) -> None:
        doc = self.repository.current_doc("Patient", patient_ref.split("/", 1)[1])
        for gp in (doc or {}).get("res", {}).get("generalPractitioner", []):
            ref = gp.get("reference", "")
            if ref.startswith("Practitioner/"):
                address = self._email_of(ref)
                if address:
                    self._enqueue(address, kind)

    # ------------------------------------------------------------------ sending
    def _enqueue(self, address: str, kind: str) -> None:
        try:
            self._queue.put_nowait((address, kind))
        except queue.Full:
            log.error("notification queue full: dropped a %s notification", kind)
            return
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="dmp-notifier", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            try:
                address, kind = self._queue.get(timeout=5)
            except queue.Empty:
                return
            try:
                self.send(address, kind)
            except Exception:
                log.exception("could not send a %s notification", kind)
            finally:
                self._queue.task_done()

    def send(self, address: str, kind: str) -> None:
        subject, body = MESSAGES[kind]
        message = EmailMessage()
        message["From"] = self.smtp.sender
        message["To"] = address
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.smtp.host, self.smtp.port, timeout=10) as server:
            server.send_message(message)

    def flush(self, timeout: float = 10) -> None:
        """Wait until queued notifications are sent (tests, shutdown)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
