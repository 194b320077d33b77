"""``web``: the live dashboard (needs the ``web`` extra; docs/web.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from streamq._cli._app import Prefix, Url, app, configure_logging, fail, open_queue, parse_duration
from streamq._cli._app import run as run_loop
from streamq._web._guard import MIN_TOKEN_LENGTH, is_loopback

EXTRA_HINT = "pip install 'streamq[web]'"


@app.command()
def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8081,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STREAMQ_WEB_TOKEN",
            show_default=False,
            help="Every request must carry it (Authorization: Bearer, or ?token= once in a "
            f"browser); at least {MIN_TOKEN_LENGTH} characters.",
        ),
    ] = None,
    refresh: Annotated[
        str, typer.Option(metavar="DURATION", help="How often the overview and charts update.")
    ] = "2s",
    history: Annotated[
        str, typer.Option(metavar="DURATION", help="How far back the charts go.")
    ] = "10m",
    claim_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Mark jobs in flight idle longer (the workers' value)."
        ),
    ] = "60s",
    url: Url = None,
    prefix: Prefix = "streamq",
) -> None:
    """Serve the live dashboard: overview with charts, jobs in flight, dead letters (retry,
    purge), workers, and a JSON API with the schemas of --json.

    Example: streamq web --port 8081
    """
    refresh_s = max(0.2, parse_duration(refresh))
    window_s = max(refresh_s * 2, parse_duration(history))
    claim_after_s = parse_duration(claim_after)
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        fail(f"the token must be at least {MIN_TOKEN_LENGTH} characters long", 2)
    if token is None and not is_loopback(host):
        fail(
            f"listening on {host} needs a token that every request must carry: "
            "give --token or set STREAMQ_WEB_TOKEN",
            2,
        )
    try:
        from streamq._web.app import Settings, create_app
        from streamq._web.serve import bind, serve
    except ImportError as exc:
        missing = (exc.name or "a module").split(".")[0]
        fail(f"streamq web needs the web extra ({missing} is missing): {EXTRA_HINT}")

    from streamq._web._guard import Guard

    configure_logging("console" if sys.stderr.isatty() else "json", "info")
    queue = open_queue(url, prefix)
    settings = Settings(refresh_s=refresh_s, window_s=window_s, claim_after_s=claim_after_s)

    async def main() -> None:
        try:
            # Reach the server before saying we serve it: if it is down, the one line the user
            # sees is the error.
            await queue.types()
            sock = bind(host, port)
        except BaseException:
            await queue.aclose()
            raise
        shown = f"[{host}]" if ":" in host else host
        where = f"http://{shown}:{sock.getsockname()[1]}/"
        how = " (every request needs the token: open it once with ?token=...)" if token else ""
        typer.echo(f"streamq: dashboard at {where}{how}", err=True)
        await serve(create_app(lambda: queue, guard=Guard(token=token), settings=settings), sock)

    run_loop(main())
