"""The API's description: a valid OpenAPI 3.1 document generated from the route declarations, and schemathesis
(in-process, against the WSGI app) finding no server error and no response that contradicts it."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance


def test_the_document_is_valid_openapi_3_1_and_covers_every_api_route(app, anonymous):
    document = anonymous.get("/api/openapi.json").get_json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    declared = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routes = {(str(rule).replace("<", "{").replace(">", "}"), method) for rule in app.url_map.iter_rules()
              if str(rule).startswith("/api/") and str(rule) != "/api/openapi.json"
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    routes = {(_plain(path), method) for path, method in routes}
    assert routes == declared
    assert {"token", "session"} <= set(document["components"]["securitySchemes"])
    assert document["paths"]["/api/health"]["get"]["security"] == []
    error = document["components"]["schemas"]
    assert any(name.startswith("ErrorBody") for name in error)


def _plain(path: str) -> str:
    """``/x/{any(a, b):operation}`` -> ``/x/{operation}``, as the document writes path parameters."""
    parts = []
    for part in path.split("/"):
        if part.startswith("{") and ":" in part:
            part = "{" + part.rsplit(":", 1)[1]
        parts.append(part)
    return "/".join(parts)


def test_no_generated_request_finds_a_server_error(app, world, token):
    """Every operation, a few generated requests each (valid and invalid ones), as an admin's token, on the
    simulated world ``usm serve`` wires."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error, response_schema_conformance,
                                           content_type_conformance])

        try:
            run()
        except Exception as failure:  # noqa: BLE001 - collected: every operation is tried, all failures shown
            failures.append(f"{operation.label}: {failure}")
    assert not failures, "\n\n".join(failures)
