"""``pause`` and ``resume``: stop and start the workers taking a type's jobs (docs/control.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from streamq._cli._app import Prefix, Url, app, fail, open_queue, run
from streamq._inspect import MAX_PAUSE_REASON
from streamq._registry import check_type_name
from streamq.exceptions import ConfigError

TypesArg = Annotated[list[str], typer.Argument(help="Job types.", show_default=False)]


def _checked(types: list[str]) -> list[str]:
    """The types, each name checked before anything changes (a bad one: exit 2)."""
    for t in types:
        try:
            check_type_name(t)
        except ConfigError as exc:
            fail(str(exc), 2)
    return list(dict.fromkeys(types))


@app.command()
def pause(
    types: TypesArg,
    reason: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help=f"Why (one line, at most {MAX_PAUSE_REASON} characters): shown by stats.",
        ),
    ] = None,
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Pause each TYPE: its workers stop taking its jobs within about a second; the jobs they
    are running finish. Enqueues go on, and the jobs wait (stats shows them waiting, and the
    type paused) until `streamq resume`. Prints one line per type.

    A type no job was enqueued to yet can be paused too (a note on stderr says so, in case the
    name is a typo). Pausing a paused type keeps its first pause's time and reason.

    Example: streamq pause launch --reason "cloud API incident"
    """
    names = _checked(types)
    if reason is not None and len(" ".join(reason.split())) > MAX_PAUSE_REASON:
        fail(f"--reason is at most {MAX_PAUSE_REASON} characters", 2)

    async def main() -> list[tuple[str, bool, bool]]:
        out = []
        async with open_queue(url, prefix) as q:
            for t, s in zip(names, await q.stats(names), strict=True):
                seen = bool(s.enqueued or s.waiting or s.in_flight or s.scheduled or s.consumers)
                out.append((t, await q.pause(t, reason=reason), seen))
        return out

    for t, done, seen in run(main()):
        if not seen:
            typer.echo(
                f"streamq: note: no job of {t} was enqueued here yet (paused anyway)", err=True
            )
        typer.echo(f"paused {t}" if done else f"{t} was paused already")


@app.command()
def resume(types: TypesArg, url: Url = None, prefix: Prefix = "streamq") -> None:
    """Resume each paused TYPE: its workers take its jobs again within about a second. Prints
    one line per type.

    Example: streamq resume launch
    """
    names = _checked(types)

    async def main() -> list[tuple[str, bool]]:
        async with open_queue(url, prefix) as q:
            return [(t, await q.resume(t)) for t in names]

    for t, done in run(main()):
        typer.echo(f"resumed {t}" if done else f"{t} was not paused")
