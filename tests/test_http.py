"""backends/http.py: structured-output formats and Retry-After."""

from __future__ import annotations

import time

from llm_labeler.backends.http import response_format, retry_after_seconds


def test_response_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 5, "title": "A"}, "b": {"type": "number"}},
        "required": ["a"],
    }
    strict = response_format("json_schema", schema)
    assert strict is not None and strict["json_schema"]["strict"] is True
    body = strict["json_schema"]["schema"]
    assert body["required"] == ["a", "b"] and body["additionalProperties"] is False
    assert "maxLength" not in body["properties"]["a"] and "title" not in body["properties"]["a"]
    assert response_format("json_object", schema) == {"type": "json_object", "schema": schema}
    assert response_format("json_mode", schema) == {"type": "json_object"}
    assert response_format("none", schema) is None


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after_seconds({"retry-after": future}) or 0) <= 31
    assert retry_after_seconds({}) is None
