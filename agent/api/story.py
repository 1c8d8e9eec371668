"""`GET /api/v1/demo/story`: what the demo's scripted story is showing now (the status page displays it).
Every agent answers; only `mt5-agent demo` has a story to tell (otherwise `story` is null)."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from agent.api.auth import require_read
from agent.api.common import settings
from agent.api.keys import DEMO_STORY
from agent.api.schema import Schema
from agent.api.spec import Operation, documented

routes = web.RouteTableDef()


class StoryStep(Schema):
    step: str = Field(description="what happens now, and which alert would fire (with its runbook link)")
    elapsed_s: float = Field(description="seconds since the story began")
    length_s: float
    over: bool


class StoryAnswer(Schema):
    story: StoryStep | None = Field(description="null: no story runs (not a demo, or `--calm`)")


@routes.get("/api/v1/demo/story")
@documented(
    Operation(
        "getDemoStory",
        "The demo's scripted story, now",
        "v1",
        "read",
        StoryAnswer,
        "the story's current step, or null",
        errors=(401, 403),
        description="`mt5-agent demo` tells a story (an account on stored data, a terminal stopping, a "
        "bridge restart, recovery); the status page shows its current step.",
    )
)
async def get_story(request: web.Request) -> web.Response:
    require_read(request, settings(request))
    current = request.app.get(DEMO_STORY)
    step = current() if current is not None else None
    if step is None:
        return web.json_response({"story": None})
    body = {k: step[k] for k in ("step", "elapsed_s", "length_s", "over")}  # allow-listed
    return web.json_response({"story": body})
