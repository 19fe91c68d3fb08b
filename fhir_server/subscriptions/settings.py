"""Settings of the rest-hook delivery (kept free of imports so that config.py can load it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SubscriptionSettings:
    # Start the delivery thread with the app. Off: entries wait in the outbox (tests drive
    # `SubscriptionService.worker.run_once()` / `drain()` instead, or another process delivers).
    worker: bool = True
    # How often an idle worker looks at the outbox (a write in this process wakes it at once).
    poll_seconds: float = 5.0
    # Attempts before an entry is dead-lettered and the Subscription set to status `error`.
    max_attempts: int = 5
    # Delay before the first retry; doubles after each failed attempt, up to backoff_max_seconds.
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 600.0
    # Connect / read / write timeout of one delivery (redirects are never followed).
    timeout_seconds: float = 5.0
    # Loopback endpoints (127.0.0.0/8, ::1, localhost) are refused unless this is set (tests,
    # a local relay): a subscription must not make the server call its own internal services.
    allow_loopback: bool = False
    # Entries handled per pass of the worker.
    batch_size: int = 50


def subscription_settings_from(env) -> SubscriptionSettings:
    def number(name: str, default: float) -> float:
        raw = env.get(name)
        return float(raw) if raw else default

    return SubscriptionSettings(
        worker=env.get("DMP_SUBSCRIPTIONS_WORKER", "1") != "0",
        poll_seconds=number("DMP_SUBSCRIPTIONS_POLL_SECONDS", 5.0),
        max_attempts=int(number("DMP_SUBSCRIPTIONS_MAX_ATTEMPTS", 5)),
        backoff_seconds=number("DMP_SUBSCRIPTIONS_BACKOFF_SECONDS", 2.0),
        backoff_max_seconds=number("DMP_SUBSCRIPTIONS_BACKOFF_MAX_SECONDS", 600.0),
        timeout_seconds=number("DMP_SUBSCRIPTIONS_TIMEOUT_SECONDS", 5.0),
        allow_loopback=env.get("DMP_SUBSCRIPTIONS_ALLOW_LOOPBACK") == "1",
    )
