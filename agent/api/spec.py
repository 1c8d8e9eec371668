"""What the OpenAPI document says of each operation, declared next to its handler.

A handler is decorated with `@documented(Operation(...))`; the document generator walks the app's route
table and reads this from each route's handler, so a route cannot be registered without being described
(agent.api.openapi refuses an undescribed one). No aiohttp here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

# read: the read or admin token, or a client JWT (scoped to its accounts); token: the read or admin token
# only (a client JWT is refused); admin: the admin token; none: public.
Auth = Literal["read", "token", "admin", "none"]
ATTRIBUTE = "__openapi_operation__"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: Mapping[str, Any]
    description: str | None = None
    example: Any = None

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where, "required": self.where == "path"}
        if self.description:
            out["description"] = self.description
        out["schema"] = dict(self.schema)
        if self.example is not None:
            out["example"] = self.example
        return out


@dataclass(frozen=True)
class Operation:
    """One operation: its answer (a model, or a raw media type), who may call it, its errors."""

    operation_id: str
    summary: str
    tag: str
    auth: Auth
    ok: type[BaseModel] | None  # the 200 body; None: `content` says what it is
    ok_description: str
    errors: tuple[int, ...] = ()  # statuses answered with the shared error responses
    params: tuple[Param, ...] = ()
    description: str | None = None
    body: type[BaseModel] | None = None  # required JSON request body
    # Other answers: status -> (description, model of the JSON body; None: no body, as a 304).
    responses: Mapping[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    content: Mapping[str, Any] | None = None  # the 200 content when it is not a model


def documented(operation: Operation) -> Callable[[F], F]:
    """Attach the operation to its handler (the same function object, so route decorators may wrap in
    any order)."""

    def attach(handler: F) -> F:
        setattr(handler, ATTRIBUTE, operation)
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, ATTRIBUTE, None)
