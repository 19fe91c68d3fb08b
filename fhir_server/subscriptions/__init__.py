"""FHIR R4 Subscriptions with a rest-hook channel.

A client creates a Subscription (criteria = a search of one type, channel rest-hook). The server
accepts it as `active` (no handshake: R4 defines none) and records the client, user and scopes
that created it beside it, server-side. Every committed write of a matching resource queues a
notification in a durable outbox in MongoDB; a background worker delivers it:

- with no payload, an HTTP POST with no body to the endpoint (R4: the client then searches);
- with payload application/fhir+json, the resource PUT to [endpoint]/[type]/[id] (R4: an update
  with the endpoint as the service base);
- the subscription's `channel.header` values on each request; no redirects, short timeouts;
- only if the subscriber may read the resource *at delivery time* through the access policy
  (`RequestAccess.visible`, the rule of every read): otherwise nothing at all is sent;
- retried with exponential backoff, then dead-lettered with the Subscription set to `error`;
  a later success sets it back to `active`.

Modules: settings (configuration), resource (what a Subscription may say), owner (the subscriber),
store (the collections), service (write hook, write listener, delivery decisions), worker (HTTP).
"""

from fhir_server.subscriptions.settings import SubscriptionSettings

__all__ = ["SubscriptionSettings"]
