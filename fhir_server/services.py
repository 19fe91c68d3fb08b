"""Wiring of the layers below HTTP: storage -> search -> interactions. Built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.database import Database

from fhir_server.audit import AuditTrail
from fhir_server.config import Settings
from fhir_server.notify import Notifier
from fhir_server.interactions.bundles import BundleInteractions
from fhir_server.interactions.resources import ResourceInteractions
from fhir_server.interactions.search import SearchInteractions
from fhir_server.policy.access import AccessPolicy
from fhir_server.policy.matrix import AuthorisationMatrix
from fhir_server.search.engine import SearchEngine
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import SearchRegistry, load_registry
from fhir_server.storage.binaries import BinaryStore
from fhir_server.storage.documents import ensure_indexes
from fhir_server.storage.repository import Repository
from fhir_server.subscriptions.service import SubscriptionService


@dataclass
class Services:
    settings: Settings
    registry: SearchRegistry
    repository: Repository
    engine: SearchEngine
    resources: ResourceInteractions
    searches: SearchInteractions
    bundles: BundleInteractions
    policy: AccessPolicy
    audit: AuditTrail
    notifier: Notifier
    subscriptions: SubscriptionService


def build_services(db: Database, settings: Settings) -> Services:
    from datetime import timedelta

    registry = load_registry()
    ensure_indexes(db, date_codes=registry.date_codes(), sort_codes=registry.sort_codes())
    repository = Repository(
        db,
        Indexer(registry),
        BinaryStore(db, settings.blob_threshold_bytes),
        lock_timeout=timedelta(seconds=settings.transaction_timeout_seconds),
    )
    engine = SearchEngine(repository, registry, settings.max_page_size, settings.default_page_size)
    policy = AccessPolicy(repository, engine, AuthorisationMatrix.load())
    # before recover(): a transaction rolled forward now still queues its notifications
    subscriptions = SubscriptionService(repository, engine, policy, settings.subscriptions)
    repository.recover()  # finish or undo transactions a previous process left half-way
    subscriptions.rebuild()
    resources = ResourceInteractions(repository, engine)
    resources.write_hooks["Subscription"] = subscriptions
    searches = SearchInteractions(repository, engine)
    bundles = BundleInteractions(repository, resources, searches)
    notifier = Notifier(repository, settings.smtp)
    audit = AuditTrail(repository, enabled=settings.audit_enabled, listeners=[notifier.on_audit_event])
    subscriptions.audit = audit
    return Services(
        settings, registry, repository, engine, resources, searches, bundles, policy, audit, notifier, subscriptions
    )
