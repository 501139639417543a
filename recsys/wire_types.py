"""Field types that read a request as its OpenAPI document describes it.

pydantic's lax mode reads more than the document allows: "3" and true as integers, true as a number,
1 and "yes" as booleans, 0.5 or "0.5" as a time (Unix seconds). A client holding to the document never
sends those, and a server that accepts them has a contract wider than the one it publishes (the
contract test sends such values and expects a 422). Query parameters arrive as text, so of these only
IsoTime applies to them (numeric text is no time).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator, Strict

ISO_DATE = re.compile(r"\s*\d{4}-\d\d-\d\d")


def _iso_text(value: object) -> object:
    if isinstance(value, datetime) or (isinstance(value, str) and ISO_DATE.match(value)):
        return value
    raise ValueError("expected an ISO 8601 time such as 2026-11-20T10:00:00+02:00")


def sent_length(limit: int) -> BeforeValidator:
    """At most `limit` characters as sent: JSON Schema's maxLength counts the text as sent, while a
    model that strips whitespace checks max_length on what is left (a long run of spaces slipped by)."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"at most {limit} characters")
        return value

    return BeforeValidator(check)


def _json_integer(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected an integer")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_text)]  # ISO 8601 text: a date, or a time (offset optional)
# An integer: 2.0 counts, as in JSON Schema; "2" and true do not. Use it as Annotated[int, Field(ge=1),
# JSON_INTEGER], after the bounds: placed before them, the schema says "ge" where it means "minimum".
JSON_INTEGER = BeforeValidator(_json_integer)
JsonNumber = Annotated[float, Strict()]  # an integer counts; true and "1.5" do not
JsonBool = Annotated[bool, Strict()]
