"""streamq's logger, and the job fields of log lines, bound into structlog's context variables
for one delivery.

The library never configures structlog; applications (and the CLI) do. Until one does, the
library is quiet below INFO (see :class:`_LibraryLogger`).

This is the one module that reaches into structlog's internals: ``structlog.contextvars``'
``_CONTEXT_VARS`` (its dict of one ContextVar per bound key) and ``STRUCTLOG_KEY_PREFIX``, set
directly to bind a delivery's fields without :func:`structlog.contextvars.bind_contextvars`'
per-call work. Tested on the range pyproject.toml pins, ``structlog>=24.1,<27``; a structlog
without them falls back to the public function. What it saves: benchmarks/README.md, "Figures
behind the code".
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any, cast

import structlog

from streamq._job import Job

# The application's configuration, once it made one.
_configured: structlog.typing.FilteringBoundLogger = structlog.get_logger("streamq")
# structlog's defaults (every level, to stdout) filtered at INFO: for an application that
# embeds a Worker and left structlog alone, two debug lines per job on its stdout are noise.
_quiet: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
    None,
    wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    logger_factory_args=("streamq",),
)


class _LibraryLogger:
    """streamq's logger: the application's structlog configuration when it made one
    (``structlog.is_configured()``), else structlog's defaults filtered at INFO. Asked at each
    call, so a configuration made after import applies."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(_configured if structlog.is_configured() else _quiet, name)


logger = cast("structlog.typing.FilteringBoundLogger", _LibraryLogger())

# structlog keeps one ContextVar per bound key, named with this prefix, in a module dict; its
# merge_contextvars processor reads every variable so named. Setting those variables directly is
# what bind_contextvars does, without rebuilding the name and a dict of tokens for every key.
_STRUCTLOG_VARS: dict[str, contextvars.ContextVar[Any]] | None
try:
    from structlog.contextvars import _CONTEXT_VARS as _STRUCTLOG_VARS
    from structlog.contextvars import STRUCTLOG_KEY_PREFIX as _PREFIX
except ImportError:  # pragma: no cover - a structlog without them: use its public function
    _STRUCTLOG_VARS = None
    _PREFIX = ""
_VARS: dict[str, contextvars.ContextVar[Any]] = {}


def _var(key: str) -> contextvars.ContextVar[Any]:
    assert _STRUCTLOG_VARS is not None
    name = _PREFIX + key
    var = _STRUCTLOG_VARS.get(name)
    if var is None:
        var = _STRUCTLOG_VARS[name] = contextvars.ContextVar(name, default=Ellipsis)
    _VARS[key] = var
    return var


def job_fields(job: Job[Any], deliveries: int) -> dict[str, Any]:
    """The fields every log line about ``job`` carries. The identity is never logged whole."""
    ident = job.identity
    args = job.args
    # Args are the args class's instance, or (an entry decoded again for a log line) JSON.
    reservation = (
        args.get("reservation_id")
        if isinstance(args, dict)
        else getattr(args, "reservation_id", None)
    )
    return {
        "job_id": job.id,
        "job_type": job.type,
        "account_id": job.account_id,
        "account_number": ident.account_number,
        "org_id": ident.org_id,
        "request_id": job.request_id,
        "reservation_id": reservation,
        "deliveries": deliveries,
    }


def bind(fields: dict[str, Any]) -> None:
    """Bind fields for the rest of the current delivery (each runs in a context of its own)."""
    if _STRUCTLOG_VARS is None:  # pragma: no cover
        structlog.contextvars.bind_contextvars(**fields)
        return
    for key, value in fields.items():
        (_VARS.get(key) or _var(key)).set(value)


_JOB_KEYS = (
    "job_id",
    "job_type",
    "account_id",
    "account_number",
    "org_id",
    "request_id",
    "reservation_id",
    "deliveries",
    "entry_id",
)
_TRACE_KEYS = ("trace_id", "span_id")
_JOB_VARS = tuple(_var(k) for k in _JOB_KEYS) if _STRUCTLOG_VARS is not None else ()
_TRACE_VARS = tuple(_var(k) for k in _TRACE_KEYS) if _STRUCTLOG_VARS is not None else ()
# The fields a delivery often shares with the one before it, as last bound in this context
# (not a structlog variable: not logged).
_SHARED: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "streamq_shared_fields", default=None
)


def bind_job(
    job: Job[Any], deliveries: int, entry_id: str, trace_ids: dict[str, str] | None = None
) -> None:
    """Bind a delivery's fields (those of :func:`job_fields`, ``entry_id``, and the ids of its
    span when it has one): what every log line about it carries. Called once per delivery.

    Setting a context variable copies part of the context's mapping (what that costs:
    benchmarks/README.md, "Figures behind the code"), so what the context holds already is not
    set again. The worker's lanes start a delivery in a context that holds the previous
    delivery's fields when that one bound nothing else (:class:`~streamq._worker.lanes.Lanes`):
    the type, account, identity, request and delivery count are set only when one of them
    changed from that delivery to this one. Trace ids this delivery does not have are unbound
    (structlog's ``...``).
    """
    if not _JOB_VARS:  # pragma: no cover
        bind(job_fields(job, deliveries) | {"entry_id": entry_id} | (trace_ids or {}))
        return
    ident = job.identity
    v_id, v_type, v_account, v_number, v_org, v_request, v_reservation, v_deliv, v_entry = _JOB_VARS
    v_id.set(job.id)
    v_entry.set(entry_id)
    shared = (
        job.type,
        job.account_id,
        ident.account_number,
        ident.org_id,
        job.request_id,
        deliveries,
    )
    if _SHARED.get() != shared:
        _SHARED.set(shared)
        v_type.set(job.type)
        v_account.set(job.account_id)
        v_number.set(ident.account_number)
        v_org.set(ident.org_id)
        v_request.set(job.request_id)
        v_deliv.set(deliveries)
    # The args' own field may hold anything: equal values of different types (1 and True)
    # are not the same value to log.
    old, value = v_reservation.get(), getattr(job.args, "reservation_id", None)
    if old is not value and (type(old) is not type(value) or old != value):
        v_reservation.set(value)
    v_trace, v_span = _TRACE_VARS
    if trace_ids:
        v_trace.set(trace_ids.get("trace_id", ...))
        v_span.set(trace_ids.get("span_id", ...))
    elif v_trace.get() is not ... or v_span.get() is not ...:
        v_trace.set(...)
        v_span.set(...)


def bind_only(fields: dict[str, Any]) -> None:
    """Bind ``fields`` as all of a delivery's fields: the job fields and trace ids not among them
    are unbound, as the context may hold those of the lane's previous job (an entry that does
    not decode has no account to log, and must not show another job's)."""
    if _JOB_VARS:
        for key, var in zip(_JOB_KEYS + _TRACE_KEYS, _JOB_VARS + _TRACE_VARS, strict=True):
            if key not in fields and var.get() is not ...:
                var.set(...)
        _SHARED.set(None)
    bind(fields)


def resolved() -> structlog.typing.FilteringBoundLogger:
    """The logger, resolved now under the current structlog configuration.

    ``logger`` is structlog's lazy proxy: unless the application enables
    ``cache_logger_on_first_use``, each call through it builds a bound logger anew, even for a
    debug line that is then dropped. The worker resolves it once when it starts, for the lines
    it logs per job. Unless structlog is configured, that logger drops lines below INFO.
    """
    return (_configured if structlog.is_configured() else _quiet).bind()
