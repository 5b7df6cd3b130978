"""Property-based tests of the OpenAPI schema the server publishes (`/docs.json`): schemathesis
generates requests to /classify, /classify_array and /info from it, valid (positive) and invalid
(negative), and none may get a 5xx answer. Bounded to a few dozen examples per operation and mode."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

API = ["/classify", "/classify_array", "/info"]
EXAMPLES = 100  # per operation and mode


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server}/docs.json")


def test_the_schema_describes_strict_request_bodies(server):
    """Unknown fields are refused, and the schema says so."""
    spec = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert set(API) <= set(spec["paths"])
    for path in API:
        for media in spec["paths"][path]["post"]["requestBody"]["content"].values():
            body = media["schema"]
            if "$ref" in body:
                body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
            assert body.get("additionalProperties") is False, (path, body)


# Through `as_strategy` and Hypothesis rather than `schemathesis.pytest.from_fixture`, whose test
# runner (4.32) reads `Node._nodeid`, which pytest 9.2 no longer has.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("path", API)
def test_no_generated_request_gets_a_server_error(api_schema, server, path, mode):
    @given(case=api_schema[path]["POST"].as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def request_is_not_a_server_error(case):
        case.call_and_validate(base_url=server, checks=[not_a_server_error], timeout=60)

    request_is_not_a_server_error()
