"""The dashboard's Starlette application: pages, the JSON API, and the sampler behind the charts.

The only module that imports starlette. The API answers with exactly the objects of the CLI's
``--json`` (built by the same functions, from ``streamq._views``), so the page, scripts and the
CLI see the same truth; the pages are rendered from those objects too. Nothing here imports the
CLI (``streamq._cli``) or typer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from streamq._inspect import QueueInspector, TypeStats
from streamq._logging import logger
from streamq._registry import check_type_name
from streamq._views import (
    dead_enqueued_at,
    dead_json,
    keys_json,
    pending_json,
    stats_json,
    workers_doc,
)
from streamq._views_job import job_state_json
from streamq._web import _metrics, _pages
from streamq._web._guard import SESSION_SCOPE_KEY, ASGIApp, Guard
from streamq._web._history import History
from streamq.exceptions import ConfigError, StreamqError

STATIC = Path(__file__).parent / "static"
#: the most a form body may be (the forms hold a token and an id)
MAX_FORM_BYTES = 16 * 1024
#: the longest job id a lookup takes (ids are UUIDs; a caller-given one is rarely long)
MAX_JOB_ID = 200
#: the least time the list of types is reused: finding them SCANs the keyspace, and the
#: sampler and every open overview ask each refresh (so: one scan per refresh, at most)
TYPES_TTL_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the dashboard behaves (``streamq web`` options)."""

    #: how often the page updates and the server samples stats for the charts
    refresh_s: float = 2.0
    #: how far back the charts go
    window_s: float = 600.0
    #: jobs in flight idle longer than this are marked (the workers' --claim-after)
    claim_after_s: float = 60.0


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _limit_param(request: Request, default: int = 100) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise _HTTPError(400, f"limit must be a positive integer, not {raw!r}")
    return min(int(raw), 10_000)


def _type_param(request: Request) -> str:
    name: str = request.path_params["type"]
    try:
        check_type_name(name)
    except ConfigError as exc:
        raise _HTTPError(400, str(exc)) from None
    return name


class Dashboard:
    """The routes, over one queue (read, re-drive, pause and resume only) opened for the
    server's lifetime."""

    def __init__(
        self, queue_factory: Callable[[], QueueInspector], *, guard: Guard, settings: Settings
    ) -> None:
        self._queue_factory = queue_factory
        self._queue: QueueInspector | None = None
        self.guard = guard
        self.settings = settings
        self.history = History(window_s=settings.window_s, interval_s=settings.refresh_s)
        self._types_ttl = max(TYPES_TTL_S, settings.refresh_s * 0.9)
        self._types: tuple[float, list[str]] = (-self._types_ttl, [])

    @property
    def queue(self) -> QueueInspector:
        assert self._queue is not None, "used outside the app's lifespan"
        return self._queue

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Open the queue and sample stats for the charts until the server stops."""
        self._queue = self._queue_factory()
        sampler = asyncio.create_task(self._sample_for_charts(), name="streamq-web-sampler")
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self._queue.aclose()

    async def _sample_for_charts(self) -> None:
        while True:
            try:
                rows = await self._stats_rows(None)
                self.history.add(time.time(), rows)
            except StreamqError as exc:
                self.history.error = str(exc)
                logger.warning("streamq.web.sample_failed", error=str(exc))
            await asyncio.sleep(self.settings.refresh_s)

    # data: the CLI's --json objects --------------------------------------------------------

    async def _stats(self, types: list[str] | None) -> list[TypeStats]:
        for t in types or ():
            check_type_name(t)
        if not types:
            at, types = self._types
            # No type known: ask again, every time. Stats of no types make no call, and a
            # server that is gone must not look like an empty one (a 503, not a page or a
            # scrape with nothing in it).
            if not types or time.monotonic() - at >= self._types_ttl:
                types = await self.queue.types()
                self._types = (time.monotonic(), types)
        return await self.queue.stats(types)

    async def _stats_rows(self, types: list[str] | None) -> list[dict[str, Any]]:
        return [stats_json(s) for s in await self._stats(types)]

    async def _pending_rows(self, type: str, limit: int) -> list[dict[str, Any]]:
        return [pending_json(p) for p in await self.queue.pending(type, limit=limit)]

    async def _job_doc(self, type: str, job_id: str) -> dict[str, Any]:
        if not job_id or len(job_id) > MAX_JOB_ID:
            raise _HTTPError(400, f"a job id is 1 to {MAX_JOB_ID} characters")
        return job_state_json(await self.queue.job(type, job_id))

    async def _workers_doc(self) -> dict[str, Any]:
        return workers_doc(await self.queue.workers(), [], time.time())

    # the JSON API ----------------------------------------------------------------------------

    async def api_stats(self, request: Request) -> Response:
        """``stats --json``: every type, or those given as ``?type=a&type=b``."""
        return JSONResponse(await self._stats_rows(request.query_params.getlist("type") or None))

    async def api_pending(self, request: Request) -> Response:
        """``pending --json`` of one type (``?limit=``, default 100)."""
        return JSONResponse(await self._pending_rows(_type_param(request), _limit_param(request)))

    async def api_keys(self, request: Request) -> Response:
        """``stats --keys TYPE --json``: the busiest keys of a type with a per-key limit
        (``?limit=``, default 10)."""
        loads = await self.queue.keys(_type_param(request), _limit_param(request, 10))
        return JSONResponse([keys_json(k) for k in loads])

    async def api_dead(self, request: Request) -> Response:
        """``dead list --json`` of one type (``?limit=``, default 100)."""
        rows = await self.queue.dead(_type_param(request), limit=_limit_param(request))
        return JSONResponse([dead_json(d) for d in rows])

    async def api_dead_one(self, request: Request) -> Response:
        """``dead show --json`` of one dead job."""
        type, job_id = _type_param(request), request.path_params["job_id"]
        found = [d for d in await self.queue.dead(type, limit=1_000_000) if d.job_id == job_id]
        if not found:
            raise _HTTPError(404, f"no dead job {job_id!r} of type {type!r}")
        return JSONResponse(dead_json(found[-1], full=True))

    async def api_job(self, request: Request) -> Response:
        """``job --json`` of one job: where it is (``unknown`` included, a 200 too)."""
        type, job_id = _type_param(request), request.path_params["job_id"]
        return JSONResponse(await self._job_doc(type, job_id))

    async def api_workers(self, _request: Request) -> Response:
        """``workers --json`` (never prunes: the page does not change state on a GET)."""
        return JSONResponse(await self._workers_doc())

    async def metrics(self, _request: Request) -> Response:
        """Every type's stats for Prometheus (text format 0.0.4): one stats read, as /api/stats."""
        body = _metrics.exposition(await self._stats(None))
        return Response(body, media_type=_metrics.CONTENT_TYPE)

    async def api_history(self, _request: Request) -> Response:
        """The live charts' samples (docs/web.md); not a CLI schema."""
        return JSONResponse(self.history.series())

    # pages -------------------------------------------------------------------------------------

    async def page_overview(self, _request: Request) -> Response:
        """One row per type, live charts."""
        rows = await self._stats_rows(None)
        return HTMLResponse(_pages.overview(rows, refresh_s=self.settings.refresh_s))

    async def page_pending(self, request: Request) -> Response:
        """The PEL of one type, longest idle first, stuck jobs marked."""
        type = _type_param(request)
        rows = await self._pending_rows(type, _limit_param(request))
        (stats,) = await self._stats_rows([type])
        flash = {"paused": f"Paused {type}.", "resumed": f"Resumed {type}."}
        html = _pages.pending(
            type,
            rows,
            stats,
            claim_after_s=self.settings.claim_after_s,
            refresh_s=max(self.settings.refresh_s, 2.0),
            csrf=self._csrf(request),
            flash=next((flash[k] for k in flash if k in request.query_params), ""),
        )
        return HTMLResponse(html)

    async def page_pause(self, request: Request) -> Response:
        """The step before a pause: what it does, and a reason to give."""
        type = _type_param(request)
        (stats,) = await self._stats_rows([type])
        return HTMLResponse(_pages.pause_confirm(type, stats, csrf=self._csrf(request)))

    async def page_dead(self, request: Request) -> Response:
        """Dead letters of one type, with retry and purge."""
        type = _type_param(request)
        entries = await self.queue.dead(type, limit=_limit_param(request))
        flash = ""
        for key, verb in (("retried", "Retried"), ("purged", "Purged")):
            raw = request.query_params.get(key, "")
            if raw.isdigit():
                flash = f"{verb} {int(raw)} job(s)."
        html = _pages.dead(
            type,
            [dead_json(d, full=True) for d in entries],
            enqueued_at={d.dead_id: dead_enqueued_at(d) for d in entries},
            csrf=self._csrf(request),
            flash=flash,
        )
        return HTMLResponse(html)

    async def page_purge(self, request: Request) -> Response:
        """The confirmation step before a purge."""
        type = _type_param(request)
        (stats,) = await self._stats_rows([type])
        return HTMLResponse(_pages.purge_confirm(type, stats["dead"], csrf=self._csrf(request)))

    async def page_job(self, request: Request) -> Response:
        """The job search (``?type=&id=``): a type and a job id, and where that job is."""
        type = request.query_params.get("type", "").strip()
        job_id = request.query_params.get("id", "").strip()
        doc = None
        if type or job_id:
            try:
                check_type_name(type)
            except ConfigError as exc:
                raise _HTTPError(400, str(exc)) from None
            doc = await self._job_doc(type, job_id)
        return HTMLResponse(_pages.job(type, job_id, doc, types=self._types[1]))

    async def page_workers(self, _request: Request) -> Response:
        """Live workers, and the consumers that have none."""
        doc = await self._workers_doc()
        live = {w["consumer"] for w in doc["workers"]}
        orphans = [
            (s["type"], name, c["in_flight"], c["idle_s"])
            for s in await self._stats_rows(None)
            for name, c in s["consumers"].items()
            if name not in live
        ]
        html = _pages.workers(doc["workers"], orphans, refresh_s=max(self.settings.refresh_s, 2.0))
        return HTMLResponse(html)

    # actions: POST with a CSRF token ------------------------------------------------------------

    def _csrf(self, request: Request) -> str:
        return self.guard.csrf_token(request.scope[SESSION_SCOPE_KEY])

    async def _form(self, request: Request) -> dict[str, str]:
        """The urlencoded form, once its CSRF token is checked (403 otherwise)."""
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise _HTTPError(413, "form too large")
        form = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        if not self.guard.verify_csrf(request.scope.get(SESSION_SCOPE_KEY), form.get("csrf")):
            raise _HTTPError(403, "refused: missing or wrong CSRF token (reload the page)")
        return form

    async def act_retry(self, request: Request) -> Response:
        """Retry one dead job (form field ``job_id``)."""
        type = _type_param(request)
        form = await self._form(request)
        job_id = form.get("job_id", "")
        if not job_id:
            raise _HTTPError(400, "no job_id given")
        done = await self.queue.retry_dead(type, [job_id])
        return self._redirect_to_dead_page(type, retried=len(done))

    async def act_retry_all(self, request: Request) -> Response:
        """Retry every dead job of the type."""
        type = _type_param(request)
        await self._form(request)
        return self._redirect_to_dead_page(type, retried=len(await self.queue.retry_dead(type)))

    async def act_purge(self, request: Request) -> Response:
        """Delete every dead job of the type, once confirmed (form field ``confirm=yes``)."""
        type = _type_param(request)
        form = await self._form(request)
        if form.get("confirm") != "yes":
            raise _HTTPError(400, "a purge needs its confirmation (confirm=yes)")
        return self._redirect_to_dead_page(type, purged=await self.queue.purge_dead(type))

    async def act_pause(self, request: Request) -> Response:
        """Pause the type (form field ``reason``, optional): ``Queue.pause``."""
        type = _type_param(request)
        form = await self._form(request)
        await self.queue.pause(type, reason=form.get("reason") or None)
        return RedirectResponse(f"/pending/{quote(type, safe='')}?paused=1", status_code=303)

    async def act_resume(self, request: Request) -> Response:
        """Resume the type: ``Queue.resume``."""
        type = _type_param(request)
        await self._form(request)
        await self.queue.resume(type)
        return RedirectResponse(f"/pending/{quote(type, safe='')}?resumed=1", status_code=303)

    @staticmethod
    def _redirect_to_dead_page(type: str, **counts: int) -> Response:
        query = "&".join(f"{k}={v}" for k, v in counts.items())
        return RedirectResponse(f"/dead/{quote(type, safe='')}?{query}", status_code=303)


async def _on_error(request: Request, exc: Exception) -> Response:
    """One message: JSON under /api/, a page elsewhere; the server down is a 503."""
    if isinstance(exc, _HTTPError):
        status, message = exc.status, str(exc)
    elif isinstance(exc, ConfigError):
        status, message = 400, str(exc)
    elif isinstance(exc, StreamqError):
        status, message = 503, str(exc)
    else:  # pragma: no cover - only the two classes above are routed here
        status, message = 500, f"unexpected {type(exc).__name__}"
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    if request.url.path == "/metrics":  # a scraper: the reason, as text (the scrape fails)
        return Response(message + "\n", status_code=status, media_type="text/plain")
    return HTMLResponse(_pages.error(status, message), status_code=status)


def create_app(
    queue_factory: Callable[[], QueueInspector], *, guard: Guard, settings: Settings | None = None
) -> ASGIApp:
    """The dashboard behind its guard; ``queue_factory`` is called once, at start-up."""
    dashboard = Dashboard(queue_factory, guard=guard, settings=settings or Settings())
    routes = [
        Route("/", dashboard.page_overview),
        Route("/pending/{type}", dashboard.page_pending),
        Route("/dead/{type}", dashboard.page_dead),
        Route("/dead/{type}/purge", dashboard.page_purge),
        Route("/dead/{type}/purge", dashboard.act_purge, methods=["POST"]),
        Route("/dead/{type}/retry", dashboard.act_retry, methods=["POST"]),
        Route("/dead/{type}/retry-all", dashboard.act_retry_all, methods=["POST"]),
        Route("/pause/{type}", dashboard.page_pause),
        Route("/pause/{type}", dashboard.act_pause, methods=["POST"]),
        Route("/resume/{type}", dashboard.act_resume, methods=["POST"]),
        Route("/workers", dashboard.page_workers),
        Route("/job", dashboard.page_job),
        Route("/api/stats", dashboard.api_stats),
        Route("/api/pending/{type}", dashboard.api_pending),
        Route("/api/dead/{type}", dashboard.api_dead),
        Route("/api/dead/{type}/{job_id}", dashboard.api_dead_one),
        Route("/api/job/{type}/{job_id:path}", dashboard.api_job),
        Route("/api/workers", dashboard.api_workers),
        Route("/api/keys/{type}", dashboard.api_keys),
        Route("/api/history", dashboard.api_history),
        Route("/metrics", dashboard.metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # Only these: a handler for Exception would answer and then re-raise (a traceback in the log).
    handlers: Mapping[Any, Callable[[Request, Exception], Any]] = {
        _HTTPError: _on_error,
        StreamqError: _on_error,
    }
    app = Starlette(routes=routes, lifespan=dashboard.lifespan, exception_handlers=dict(handlers))
    return guard.wrap(app)
