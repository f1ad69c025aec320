"""Shared test setup: hypothesis profiles and the backend in use.

Profiles: ``ci`` (derandomized, no example database, no deadline; what CI and
the README's command use) and ``dev`` (random, more examples). Choose with
``--hypothesis-profile=dev``; the default is ``ci``.
"""
import os
import signal

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def time_limit():
    """Fail a test that runs past 10 s instead of letting it hang: a FIFO read that blocks or a
    regex that backtracks is interrupted (SIGALRM) and raises TimeoutError. Use it with
    ``pytestmark = pytest.mark.usefixtures("time_limit")``."""
    def expire(signum, frame):
        raise TimeoutError("the test ran past its 10 s limit (a FIFO read? a backtracking regex?)")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 10)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
