"""The OpenAPI document is the contract: schemathesis sends generated requests to the app in-process
and checks every answer against /openapi.json, with every check it has (the CLI's `--checks all`).

It runs the phases of `schemathesis run` (examples, coverage, fuzzing, stateful), once with a valid
X-API-Key and once without. The default run is bounded and derandomized (15 examples an operation,
about 15 s for both); the `slow` run has 200 an operation (`pytest -m slow tests/test_openapi_contract.py`).
Every failed check is collected, not only the first, so a report says all that is wrong.
Statuses that generated requests cannot reach here (304, 403, 413, 414, 429, 503) are made on purpose
below, and their answers go through the same checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from recsys.api import create_app
from recsys.errors import StorageUnavailable

# Not a one-letter key: the fuzzer sends short generated keys, and "k" is one it finds.
KEY = "contract-test-key"
SEED = 11
# Statuses that answer a request as refused, besides schemathesis's defaults: 413 says a body or batch
# is over a limit. Those limits are in bytes (RECSYS_MAX_BODY_BYTES, RECSYS_MAX_EVENT_BODY_BYTES),
# which JSON Schema cannot express, so a schema-valid body may be refused as too large, and a batch
# over maxItems is refused with 413 rather than 422.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "5xx"]
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
CONFIG = {
    "seed": SEED,
    "cache": {"enabled": False},  # no state kept from one run to the next: the same requests every time
    "continue-on-failure": True,
    # Hypothesis's health checks judge the generator (slow on 2 shared cores), not the API.
    "suppress-health-check": ["all"],
    "generation": {"deterministic": True, "database": "none"},
    "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": REFUSED},
               "positive_data_acceptance": {"expected-statuses": ACCEPTED}},
    # POST /v1/articles is not all-or-nothing by design: the good rows of a batch are stored and the bad
    # ones answered in `errors` (200), so a batch with one schema-violating row is rightly accepted.
    # Every other check applies to it, and negative data is checked on every other operation.
    "operations": [{"include-name": "POST /v1/articles", "checks": {"negative_data_rejection": {"enabled": False}}}],
}
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]


@dataclass(frozen=True)
class Found:
    """One failed check: which, on which operation, the status, and a request that shows it."""

    check: str
    operation: str
    title: str
    message: str
    curl: str
    status: int | None = None


@dataclass(frozen=True)
class Run:
    requests: int
    found: list[Found]

    def report(self) -> str:
        """Failures grouped by check, operation and kind, each with one example request."""
        groups = Counter((f.check, f.operation, f.title) for f in self.found)
        first = {(f.check, f.operation, f.title): f for f in reversed(self.found)}
        lines = [f"{len(self.found)} failed checks in {self.requests} requests"]
        for key, count in groups.most_common():
            example = first[key]
            lines += [f"\n{count} x {' | '.join(key)} (first: {example.status})", example.message[:600],
                      example.curl[:600]]
        return "\n".join(lines)


def contract_run(app: FastAPI, key: str | None, max_examples: int) -> Run:
    """Every phase and check of schemathesis against `app`, as `schemathesis run --checks all` would."""
    config = SchemathesisConfig.from_dict({**CONFIG, **({"headers": {"X-API-Key": key}} if key else {})})
    config.projects.override.generation.update(max_examples=max_examples)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    found, requests = [], 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError) and isinstance(event.value, hypothesis.errors.FailedHealthCheck):
            continue  # a value it cannot make (a draft text over maxLength 100,000 under some seeds): no API fault
        if isinstance(event, (events.NonFatalError, events.FatalError)):  # also a route that raised (a 500)
            pytest.fail(f"schemathesis could not run: {event.value!r}")
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            found += [_found(event.recorder, case_id, node) for case_id, nodes in event.recorder.checks.items()
                      for node in nodes if node.failure_info and not _same_on_the_wire(event.recorder, case_id, node)]
        if isinstance(event, events.EngineFinished):  # checks over the whole run (after_run)
            found += [Found("run", f.operation or "", f.title, f.message, "") for f in event.failures]
    return Run(requests, found)


def _found(recorder: Any, case_id: str, node: Any) -> Found:
    failure, interaction = node.failure_info.failure, recorder.interactions.get(case_id)
    status = interaction.response.status_code if interaction and interaction.response else None
    return Found(node.name, failure.operation or "", failure.title, failure.message, node.failure_info.code_sample,
                 status)


def _same_on_the_wire(recorder: Any, case_id: str, node: Any) -> bool:
    """Negative data for an array-of-strings query parameter (`exclude`), which schemathesis 4.32 sends
    and expects refused: a lone string, or numbers. On the wire every value of such a parameter is a
    valid array (`exclude=a` is ["a"], `exclude=1&exclude=2` is ["1", "2"]), so no server can refuse it."""
    case = recorder.cases[case_id].value
    mutations = getattr(case.meta.phase.data, "mutations", ()) if node.name == "negative_data_rejection" else ()
    arrays = {p["name"] for p in case.operation.definition.raw.get("parameters", [])
              if p.get("in") == "query" and _is_array(p.get("schema", {}))}
    return bool(mutations) and all(m.parameter in arrays and m.parameter_location.value == "query" for m in mutations)


def _is_array(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array" or any(_is_array(option) for option in schema.get("anyOf", []))


def make_app(engine, settings, **changes: Any) -> FastAPI:  # noqa: ANN001
    """The app with a key and no rate limit (429s would drown the other answers; 429 is checked below)."""
    return create_app(settings.model_copy(update={"api_keys": SecretStr(KEY), "rate_limit_per_s": 0, **changes}),
                      engine)


@pytest.fixture()
def contract_app(engine, settings) -> FastAPI:  # noqa: ANN001
    """A fresh store per test: the run writes and deletes articles."""
    return make_app(engine, settings)


@pytest.mark.parametrize("key", [KEY, None], ids=["with-key", "without-key"])
def test_every_answer_matches_the_openapi_document(contract_app: FastAPI, key: str | None) -> None:
    run = contract_run(contract_app, key, max_examples=15)
    assert not run.found, run.report()
    assert run.requests > 1000  # it really exercised the API


@pytest.mark.slow
@pytest.mark.parametrize("key", [KEY, None], ids=["with-key", "without-key"])
def test_every_answer_matches_the_openapi_document_long_run(contract_app: FastAPI, key: str | None) -> None:
    run = contract_run(contract_app, key, max_examples=200)
    assert not run.found, run.report()


# -- statuses the generated run cannot reach: made on purpose, checked the same way ------------------
def fill_up_disk(app: FastAPI) -> None:
    """The database file is full for real (SQLite max_page_count, as in test_disk_full.py)."""
    db = app.state.engine.store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")


def full_event_store(app: FastAPI) -> None:
    """A write of the event counters fails as on a full disk (a few counter rows fit in pages the
    tables already have, so max_page_count alone does not make the write fail)."""
    def record(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("cannot write to the database: disk is full; nothing of this request was stored")

    app.state.events.record = record


def etag_of(client: TestClient, path: str) -> dict[str, str]:
    return {"If-None-Match": client.get(path).headers["etag"]}


EVENT = {"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}
ROWS = [{"id": f"n{i}", "title": f"Новина {i}", "text": "х" * 1900, "lang": "uk"} for i in range(40)]
B1 = {"article_id": "b1"}
SLOW = {"rate_limit_per_s": 0.001, "rate_limit_burst": 1}


@dataclass(frozen=True)
class Made:
    """A request made to get one status: with these settings, on this operation."""

    status: int
    method: str
    path: str
    send: Callable[[TestClient], Any]
    changes: dict[str, Any] = field(default_factory=dict)
    path_parameters: dict[str, str] = field(default_factory=dict)


MADE = {
    "304 by id (hot path)": Made(304, "GET", "/v1/related/{article_id}", lambda c: c.get(
        "/v1/related/b1", headers=etag_of(c, "/v1/related/b1")), path_parameters=B1),
    "304 by url": Made(304, "GET", "/v1/related", lambda c: c.get(
        "/v1/related?url=https://news.example/b1", headers=etag_of(c, "/v1/related?url=https://news.example/b1"))),
    "304 fragment": Made(304, "GET", "/v1/related/{article_id}/fragment", lambda c: c.get(
        "/v1/related/b1/fragment", headers=etag_of(c, "/v1/related/b1/fragment")), path_parameters=B1),
    "304 widget": Made(304, "GET", "/widget.js", lambda c: c.get("/widget.js", headers=etag_of(c, "/widget.js"))),
    "429 by id (hot path)": Made(429, "GET", "/v1/related/{article_id}", lambda c: [
        c.get("/v1/related/b1") for _ in range(2)][-1], SLOW, B1),
    "429 events": Made(429, "POST", "/v1/events", lambda c: [c.post("/v1/events", json=EVENT) for _ in range(2)][-1],
                       SLOW),
    "403 writes off": Made(403, "POST", "/v1/articles", lambda c: c.post(
        "/v1/articles", json=ROWS[0], headers={"X-API-Key": KEY}), {"api_keys": None}),
    "403 foreign origin": Made(403, "POST", "/v1/events", lambda c: c.post(
        "/v1/events", json=EVENT, headers={"Origin": "https://evil.example"})),
    "413 event body": Made(413, "POST", "/v1/events", lambda c: c.post("/v1/events", json=[EVENT] * 2000)),
    "413 batch": Made(413, "POST", "/v1/articles", lambda c: c.post(
        "/v1/articles", json=ROWS[:3], headers={"X-API-Key": KEY}), {"max_batch": 2}),
    "414": Made(414, "GET", "/healthz", lambda c: c.get("/healthz?pad=" + "x" * 9000)),
    "503 articles": Made(503, "POST", "/v1/articles", lambda c: fill_up_disk(c.app) or c.post(
        "/v1/articles", json=ROWS, headers={"X-API-Key": KEY})),
    "503 events": Made(503, "POST", "/v1/events", lambda c: full_event_store(c.app) or c.post(
        "/v1/events", json=EVENT)),
}


@pytest.mark.parametrize("name", list(MADE))
def test_answers_made_on_purpose_match_the_openapi_document(engine, settings, name: str) -> None:  # noqa: ANN001
    made = MADE[name]
    app = make_app(engine, settings, **made.changes)
    response = made.send(TestClient(app, raise_server_exceptions=False))
    assert response.status_code == made.status, response.text
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    case = schema[made.path][made.method].Case(path_parameters=made.path_parameters)
    case.validate_response(response, checks=CONFORMANCE)
