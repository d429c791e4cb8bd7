"""The OpenAPI document: it parses, is OpenAPI 3.1, lists every endpoint with its methods,
parameters, security schemes and error shapes; what it lists is what the URLconf routes."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from .conftest import API

pytestmark = pytest.mark.django_db

EXPECTED = {
    "/api/v1/sessions/": {"get"},
    "/api/v1/sessions/{session_id}/": {"get"},
    "/api/v1/sessions/{session_id}/branches/{branch_id}/turns/": {"get"},
    "/api/v1/sessions/{session_id}/branches/{branch_id}/turns/{n}/trace/": {"get"},
    "/api/v1/sessions/{session_id}/usage/": {"get"},
    "/api/v1/sessions/{session_id}/annotations/": {"get", "post"},
    "/api/v1/annotations/{annotation_id}/": {"patch", "delete"},
    "/api/v1/score-definitions/": {"get"},
    "/api/v1/sessions/{session_id}/review/": {"get", "put"},
}


@pytest.fixture
def document(caller):
    response = caller("viewer").get(f"{API}/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_document_lists_every_endpoint(document):
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "Forkview API"
    assert {path: set(ops) for path, ops in document["paths"].items()} == EXPECTED
    assert reverse("api-v1:openapi-json") == f"{API}/openapi.json"


def test_every_operation_is_described(document):
    ids = set()
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            ids.add(op["operationId"])
            assert op.get("summary"), (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)
            if "{" in path:
                names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
                assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
                assert "404" in op["responses"]
            assert op["security"] == [{"BearerToken": []}, {"SessionCookie": []}]
            if method in ("post", "put", "patch"):
                assert "requestBody" in op and "422" in op["responses"]
    assert len(ids) == sum(len(ops) for ops in EXPECTED.values())  # unique ids


def test_security_schemes(document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"] == {"type": "http", "scheme": "bearer"}
    assert (
        schemes["SessionCookie"]["type"] == "apiKey" and schemes["SessionCookie"]["in"] == "cookie"
    )


def test_references_resolve(document):
    schemas = document["components"]["schemas"]

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert (
                    ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
                ), ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def test_the_list_parameters_are_documented(document):
    params = {p["name"] for p in document["paths"]["/api/v1/sessions/"]["get"]["parameters"]}
    assert {"sort", "page", "per_page", "branched", "tool", "from", "to"} <= params


def test_the_document_needs_credentials(db):
    response = Client().get(f"{API}/openapi.json")
    assert response.status_code == 401 and "detail" in response.json()
