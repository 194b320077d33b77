"""``web``: the live dashboard (needs the ``web`` extra; docs/web.md)."""

from __future__ import annotations

import secrets
import ssl
import sys
from pathlib import Path
from typing import Annotated

import typer

from streamq._cli._app import Prefix, Url, app, configure_logging, fail, open_queue, parse_duration
from streamq._cli._app import run as run_loop
from streamq._web._guard import MIN_TOKEN_LENGTH, is_loopback

EXTRA_HINT = "pip install 'streamq[web]'"


@app.command()
def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on (--no-token: loopback only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8081,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STREAMQ_WEB_TOKEN",
            show_default=False,
            help="Every request must carry it (Authorization: Bearer, or ?token= once in a "
            f"browser); at least {MIN_TOKEN_LENGTH} characters. Without it, a token is made "
            "for this run and its login URL printed.",
        ),
    ] = None,
    no_token: Annotated[
        bool,
        typer.Option(
            "--no-token",
            help="Serve without a token: any local user or process can use the dashboard, "
            "retry and purge too. Loopback only.",
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Serve HTTPS with this certificate chain (PEM; with --tls-key)."
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="The certificate's private key (PEM).")
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

    Every request needs a token: without --token, one is made for this run and the login URL
    printed (open it once; the browser's cookie lasts 12 hours).

    Example: streamq web --port 8081
    """
    refresh_s = max(0.2, parse_duration(refresh))
    window_s = max(refresh_s * 2, parse_duration(history))
    claim_after_s = parse_duration(claim_after)
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        fail(f"the token must be at least {MIN_TOKEN_LENGTH} characters long", 2)
    if no_token and token is not None:
        fail("--no-token and a token (--token or STREAMQ_WEB_TOKEN) contradict each other", 2)
    if no_token and not is_loopback(host):
        fail(
            f"listening on {host} needs a token that every request must carry: "
            "drop --no-token (a token is then made for this run), or give --token",
            2,
        )
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together", 2)
    if tls_cert is not None and tls_key is not None:
        try:  # one line now rather than uvicorn's traceback later
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            fail(f"cannot load the TLS certificate {tls_cert} and key {tls_key}: {exc}", 2)
    # Jupyter's way: a token nobody chose still keeps other local users and processes out.
    made = not no_token and token is None
    if made:
        token = secrets.token_urlsafe(24)
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
        scheme = "https" if tls_cert is not None else "http"
        where = f"{scheme}://{shown}:{sock.getsockname()[1]}/"
        if made:
            # The one place the token is shown (Jupyter's way): whoever reads it can log in.
            # One write, so a reader of the first line sees the second too.
            how = f"\nstreamq: log in once at {where}?token={token} (a token made for this run)"
        elif token:
            how = " (every request needs the token: open it once with ?token=...)"
        else:
            how = " (no token: any local user or process can use it)"
        typer.echo(f"streamq: dashboard at {where}{how}", err=True)
        guard = Guard(token=token)
        app = create_app(lambda: queue, guard=guard, settings=settings)
        await serve(app, sock, tls_cert=tls_cert, tls_key=tls_key)

    run_loop(main())
