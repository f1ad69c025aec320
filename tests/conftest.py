"""Shared test setup: hypothesis profiles and the backend in use.

Profiles: ``ci`` (derandomized, no example database, no deadline; what CI and
the README's command use) and ``dev`` (random, more examples). Choose with
``--hypothesis-profile=dev``; the default is ``ci``.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
