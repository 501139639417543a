"""HTTP edge for bad input: bodies read as strict JSON, and error answers that are always valid JSON.

A body nested a thousand deep, an integer of 5,000 digits or a NaN used to escape the body reader
as a RecursionError or ValueError (500); a validation error that echoes a NaN, an Infinity or a
lone surrogate used to break the JSON encoder (500). Here each becomes a 4xx with a JSON message.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

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


def _takes_many(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return (get_origin(annotation) or annotation) in (list, set, tuple)


async def one_value_each(request: Request) -> None:
    """Refuse a query parameter that takes one value but is given several: FastAPI would keep the
    last one silently, while the OpenAPI document says it is one number or string."""
    route = request.scope.get("route")
    for param in getattr(getattr(route, "dependant", None), "query_params", ()):
        name = param.alias
        if len(request.query_params.getlist(name)) > 1 and not _takes_many(param.field_info.annotation):
            raise InvalidInput(f"query parameter {name!r} is given more than once; it takes one value")


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route of this path answers (GET and POST /v1/related are two routes)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Answer RecsysErrors, HTTP errors and validation errors as JSON that always encodes."""

    @app.exception_handler(RecsysError)
    async def _recsys_error(_: Request, exc: RecsysError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # Starlette's 405 names the methods of the first route of the path only
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(app, request))
            exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allow})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes each error's input as it is: a NaN or a lone surrogate there
        # made the encoder fail, and a deep input made jsonable_encoder recurse until it failed
        return SafeJSONResponse({"detail": safe_json.plain(exc.errors())}, status_code=422)
