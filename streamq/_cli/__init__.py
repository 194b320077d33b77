"""The ``streamq`` command line: the only package that imports typer (and rich).

Commands stay thin over the ``streamq`` API and ``streamq._views`` (the ``--json`` documents
and the formatting, shared with the dashboard). Every error a user can cause ends in one line on
stderr and an exit code: 1 for a runtime failure, 2 for a usage error. ``--debug`` adds the
traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from streamq._cli import (  # noqa: F401 - importing registers the commands
    jobs,
    lookup,
    schedule,
    schedules,
    web,
    worker,
)
from streamq._cli._app import app
from streamq._cli.admin import server_app
from streamq._cli.dead import dead_app
from streamq.exceptions import StreamqError

app.add_typer(dead_app, name="dead")
app.add_typer(server_app, name="server")

__all__ = ["app", "main"]


def _exit_with_error(message: str, code: int) -> None:
    if os.environ.get("STREAMQ_DEBUG") == "1" or "--debug" in sys.argv[1:3]:
        traceback.print_exc()
    typer.echo(f"streamq: error: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; every failure becomes one line and an exit code."""
    try:
        rv = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # as typer checks it (click is vendored)
            # `streamq` or `streamq dead` alone: the help, as click shows it, not as an error.
            typer.echo(exc.format_message(), err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        # Usage errors (exit 2) and the like: one line, with where to look for help.
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        _exit_with_error(f"{message}{hint}", getattr(exc, "exit_code", 1))
    except StreamqError as exc:
        _exit_with_error(str(exc), 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line (and --debug for the traceback)
        _exit_with_error(f"unexpected {type(exc).__name__}: {exc}", 1)
    sys.exit(rv if isinstance(rv, int) else 0)
