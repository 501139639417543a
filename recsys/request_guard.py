"""HTTP edge for bad input: bodies read as strict JSON, and error answers that are always valid JSON.

A body nested a thousand deep, an integer of 5,000 digits or a NaN used to escape the body reader
as a RecursionError or ValueError (500); a validation error that echoes a NaN, an Infinity or a
lone surrogate used to break the JSON encoder (500). Here each becomes a 4xx with a JSON message.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from recsys import safe_json
from recsys.errors import InvalidInput, RecsysError


class SafeJSONResponse(JSONResponse):
    """A JSONResponse whose body is strict JSON whatever the content (see safe_json.dumps)."""

    def render(self, content: Any) -> bytes:
        return safe_json.dumps(content)


def error_response(exc: RecsysError) -> SafeJSONResponse:
    """The JSON error every route answers for a RecsysError (status and headers from the error)."""
    return SafeJSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=exc.headers())


async def json_body(request: Request) -> Any:
    """The request body as strict JSON; InvalidInput (422) says what is wrong with it."""
    try:
        return safe_json.loads(await request.body())
    except InvalidInput as exc:
        raise InvalidInput(f"body is {exc.message}") from exc


def install(app: FastAPI) -> None:
    """Answer RecsysErrors and validation errors as JSON that always encodes."""

    @app.exception_handler(RecsysError)
    async def _recsys_error(_: Request, exc: RecsysError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each error's input as it is: a NaN or a lone surrogate there
        # made the encoder fail, and a deep input made jsonable_encoder recurse until it failed
        return SafeJSONResponse({"detail": safe_json.plain(exc.errors())}, status_code=422)
