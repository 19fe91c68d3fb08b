"""The audit tests run in the DMP world of the policy tests (same actors and tokens)."""

from tests.policy.conftest import as_actor, dmp_app  # noqa: F401
