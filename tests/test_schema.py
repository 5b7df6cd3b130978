"""Property-based tests of the OpenAPI document the server publishes (`/docs.json`): schemathesis
generates requests to /classify, /classify_array and /info from it, valid (positive) and invalid
(negative); none may get a 5xx answer, and every answer must be one the document declares (its
status, media type and body schema). Bounded to 100 examples per operation and mode."""

from __future__ import annotations

from importlib.metadata import version

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

API = ["/classify", "/classify_array", "/info"]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
# GET /info takes nothing: nothing to make invalid
RUNS = [(path, "POST", mode) for path in API for mode in MODES] + [("/info", "GET", GenerationMode.POSITIVE)]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
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
@pytest.mark.parametrize("path, method, mode", RUNS, ids=[f"{m} {p} {g}" for p, m, g in RUNS])
def test_every_generated_request_gets_a_declared_answer_and_no_server_error(
    api_schema, server, path, method, mode
):
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answer_is_declared(case):
        case.call_and_validate(base_url=server, checks=CHECKS, timeout=60)

    answer_is_declared()


def test_the_document_names_the_service_its_version_and_every_endpoint(server):
    spec = httpx.get(f"{server}/docs.json", timeout=10).json()
    assert spec["info"]["version"] == version("ser-toolkit") != "None"
    assert spec["info"]["title"] == "Speech emotion recognition" and spec["info"]["description"]
    assert {"/classify", "/classify_array", "/info", "/stream"} <= set(spec["paths"])
    assert set(spec["paths"]["/info"]) == {"get", "post"}
    assert set(spec["paths"]["/stream"]["get"]["responses"]) == {"101", "426"}
    assert "sampling_rate" in spec["paths"]["/stream"]["get"]["description"]  # the protocol
    for path in ("/classify", "/classify_array"):
        responses = spec["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "400", "413", "415", "422", "500", "503"}
        assert responses["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Answer"
        }
    answer = spec["components"]["schemas"]["Answer"]
    assert set(answer["required"]) == {"label", "score", "scores", "duration_s", "model"}
    assert "segments" in answer["properties"]


def test_get_info_answers_as_post_does_and_plain_http_to_the_stream_gets_426(server):
    got, posted = httpx.get(f"{server}/info", timeout=10), httpx.post(f"{server}/info", timeout=10)
    assert got.status_code == posted.status_code == 200 and got.json() == posted.json()
    stream = httpx.get(f"{server}/stream", timeout=10)
    assert stream.status_code == 426 and "ws://" in stream.json()["error"]
