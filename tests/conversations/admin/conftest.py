"""Fixtures of the admin tests: a superuser's test client."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User


@pytest.fixture
def admin(client):
    """The test client, logged in as a superuser."""
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client
