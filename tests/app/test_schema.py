"""Schemathesis over the app's OpenAPI schema: generated requests never get a 5xx."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402


def test_no_server_error_on_generated_requests(app_data, tmp_path):
    from galaxai.app import create_app

    app = create_app([app_data[0]], [app_data[1]], tmp_path / "cache")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures, calls = [], []
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            response = case.call()
            calls.append(response.status_code)
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, response.status_code))

        check()
    assert len(calls) >= 10 and failures == []
