"""The test settings' environment, loaded as a pytest plugin (``-p tests.support.environment``
in pyproject.toml's ``addopts``) so it is set before pytest-django imports the settings.

A fixed secret key and plain HTTP (live servers and the test client speak it), set only where
the environment does not say otherwise; every child process (servers, workers) inherits them.
``tests/test_settings.py`` checks the production defaults in processes of their own.
"""

from __future__ import annotations

import os

TEST_ENVIRONMENT = {
    "DJANGO_SECRET_KEY": "forkview-tests-only-" + "k3y" * 16,
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_SECURE_HSTS_SECONDS": "0",
    "DJANGO_SESSION_COOKIE_SECURE": "false",
    "DJANGO_CSRF_COOKIE_SECURE": "false",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "",
}

for _name, _value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)
