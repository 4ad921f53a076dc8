"""Schemathesis over the API's own OpenAPI schema (issue #14 item 10), against the real app on a real
Redis (a registered heartbeat stands in for a worker; no job runs). Bounded: FUZZ_EXAMPLES (10)
examples per operation and mode, about 10 s in all.

Schema-valid requests (positive mode) must be answered 2xx, or 404/409 (no such job / not finished),
422 (what a schema cannot say: a decodable clip, boxes inside it, a served model, an Idempotency-Key
already used for another body) or 429; schema-invalid ones (negative mode: operations with a body or
query parameters) must be refused with a 4xx. Every answer must match its documented status, content
type and schema, and none may be a 5xx.
"""

from __future__ import annotations

import os

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig

from tests.service.api.conftest import MODEL

CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "422", "429"]
"""
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))


def _unsendable(case) -> bool:
    """A multipart part whose value is null is dropped by the HTTP client (requests skips it), so the
    request sent is not the schema-invalid one generated: nothing to check."""
    return isinstance(case.body, dict) and any(v is None for v in case.body.values())


def _run(op, mode, failures: list[str]) -> None:
    negative = mode == schemathesis.GenerationMode.NEGATIVE

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate], database=None)
    def check(case):
        if negative and _unsendable(case):
            return
        case.call_and_validate()

    try:
        check()
    except Unsatisfiable:  # nothing in this operation can be made schema-invalid
        pass
    except Exception as e:  # noqa: BLE001 - every failure is reported at the end
        failures.append(f"{mode.name} {op.label}: {e}")


def test_api_conforms_to_its_schema(api_factory):
    api = api_factory(worker_ttl_s=600)
    api.queue.heartbeat("fuzz-worker", {"models": [MODEL], "device": "cpu"})  # /readyz: ready
    config = SchemathesisConfig.from_str(CONFIG)
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json", config=config)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for op in operations:
        _run(op, schemathesis.GenerationMode.POSITIVE, failures)
        if op.body or op.query:
            _run(op, schemathesis.GenerationMode.NEGATIVE, failures)
    assert not failures, "\n\n".join(failures)


def test_upload_schema_states_what_the_server_refuses(api_factory):
    """No extra form parts, the video's file extensions, and this server's caps are in the schema."""
    api = api_factory(max_boxes_per_frame=7, max_hypotheses=3, max_diffusion_steps=2)
    spec = httpx.get(f"{api.url}/openapi.json").json()
    body = spec["paths"]["/v1/estimate"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = body["schema"]
    assert form["additionalProperties"] is False and form["required"] == ["video"]
    assert set(form["properties"]) == {"video", "options"}
    disposition = body["encoding"]["video"]["headers"]["Content-Disposition"]["schema"]["pattern"]
    assert "[mM][pP]4" in disposition and "[mM][kK][vV]" in disposition
    options = form["properties"]["options"]
    assert options["additionalProperties"] is False
    props = options["properties"]
    caps = {name: [b.get("maximum") for b in props[name]["anyOf"] if b.get("type") == "integer"]
            for name in ("hypotheses", "diffusion_steps")}
    assert caps == {"hypotheses": [3], "diffusion_steps": [2]}
    frame = options["properties"]["boxes"]["anyOf"][0]["additionalProperties"]["anyOf"][0]
    assert frame["maxItems"] == 7
