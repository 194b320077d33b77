"""The envelope: a Job <-> the fields of one stream entry. The only module that imports orjson.

A job travels as three stream fields: ``id`` (the job id, readable even when the body is not),
``v`` (the format version) and ``job`` (the JSON envelope). Decoding never executes code: it is
JSON parsing followed by a typed conversion of the args (msgspec), nothing else.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import msgspec
import orjson

from streamq._job import Job, Principal

# What an entry holds belongs to the protocol (the backends read it too); re-exported for callers.
from streamq.backends._base import F_BODY as F_BODY
from streamq.backends._base import F_ID as F_ID
from streamq.backends._base import F_VERSION as F_VERSION
from streamq.backends._base import Fields as Fields
from streamq.backends._base import job_id_of as job_id_of
from streamq.exceptions import CheckpointError, ConfigError, InvalidJobError, JobTooLargeError

FORMAT_VERSION = 1
_VERSION_BYTES = str(FORMAT_VERSION).encode()


@dataclass(slots=True)
class Envelope:
    """A decoded entry: its args are raw JSON values, or the args class's instance when the
    typed decoder made it. One per delivery, so not frozen (cheaper to build)."""

    job: Job[Any]
    trace: dict[str, str]
    enqueued_at: float


class Meta(Protocol):
    """What the runner reads of an entry besides its Job: an :class:`Envelope`, or the decoded
    body itself on the typed decoder's path."""

    @property
    def trace(self) -> dict[str, str]: ...

    @property
    def enqueued_at(self) -> float: ...


ArgsT = TypeVar("ArgsT")


class _Body(msgspec.Struct, Generic[ArgsT]):
    """The JSON envelope. ``_Body[dict[str, Any]]`` for the general path (args checked later);
    the typed decoder parses and checks the args too, with ``_Body[TheArgsClass]``."""

    type: str
    args: ArgsT
    account_id: int = 0
    # msgspec fills the frozen dataclass itself (no __init__ call), cheaper than building it
    # from an intermediate struct (benchmarks/README.md, "Figures behind the code").
    identity: Principal = msgspec.field(default_factory=Principal)
    request_id: str | None = None
    enqueued_at: float = 0.0
    trace: dict[str, str] = msgspec.field(default_factory=dict)


def _default(obj: Any) -> Any:
    # orjson serialises dataclasses itself; this covers the rest (e.g. msgspec Structs).
    if isinstance(obj, msgspec.Struct):
        return msgspec.to_builtins(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode(
    job: Job[Any], job_id: str, *, trace: Mapping[str, str] | None = None, max_size: int = 0
) -> Fields:
    """Encode a job (whose id is ``job_id``) into stream fields."""
    ident = job.identity
    body = {
        "type": job.type,
        "account_id": job.account_id,
        "identity": {
            "account_number": ident.account_number,
            "org_id": ident.org_id,
            "type": ident.type,
            "user": ident.user,
        },
        "request_id": job.request_id,
        "args": job.args,
        "enqueued_at": time.time(),
        "trace": trace or {},
    }
    try:
        data = orjson.dumps(body, default=_default)
    except TypeError as exc:
        raise InvalidJobError(
            f"args cannot be encoded as JSON: {exc}", job_id=job_id, job_type=job.type
        ) from exc
    if max_size and len(data) > max_size:
        raise JobTooLargeError(
            f"encoded job is {len(data)} bytes, over the limit of {max_size}",
            job_id=job_id,
            job_type=job.type,
        )
    return {F_ID: job_id.encode(), F_VERSION: _VERSION_BYTES, F_BODY: data}


def new_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as strings, from one ``os.urandom`` call.

    What ``str(uuid.uuid4())`` gives, for less per id in a batch (one system call for all).
    """
    pool = bytearray(os.urandom(16 * n))
    out = []
    for i in range(0, 16 * n, 16):
        pool[i + 6] = pool[i + 6] & 0x0F | 0x40  # version 4
        pool[i + 8] = pool[i + 8] & 0x3F | 0x80  # RFC 4122 variant
        h = pool[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def decode(fields: Mapping[bytes, bytes]) -> Envelope:
    """Decode stream fields into an envelope. Raises InvalidJobError with the reason."""
    job_id = job_id_of(fields)
    version = fields.get(F_VERSION)
    if version != _VERSION_BYTES:
        shown = version.decode(errors="replace") if version is not None else "missing"
        raise InvalidJobError(
            f"unsupported envelope version {shown!r} (this worker reads {FORMAT_VERSION})",
            job_id=job_id,
        )
    if job_id is None:
        raise InvalidJobError("missing or undecodable job id field")
    data = fields.get(F_BODY)
    if data is None:
        raise InvalidJobError("missing job body field", job_id=job_id)
    try:
        body = msgspec.convert(orjson.loads(data), type=_Body[dict[str, Any]])
    except orjson.JSONDecodeError as exc:
        raise InvalidJobError(f"job body is not valid JSON: {exc}", job_id=job_id) from exc
    except msgspec.ValidationError as exc:
        raise InvalidJobError(f"invalid envelope: {_where(exc, 'job')}", job_id=job_id) from exc
    return Envelope(_job(job_id, body), body.trace, body.enqueued_at)


class TypedDecoder:
    """Decodes entries of one job type with their args straight into its args class.

    The worker's fast path: one msgspec pass instead of JSON parsing, envelope conversion and
    args conversion. It returns None for anything it does not take as is (another version, a
    missing field, a body or args that do not check, a job of another type); the caller then
    takes the general path (:func:`decode` + :func:`convert_args`), whose errors name the field.
    """

    __slots__ = ("_decode", "_type")

    def __init__(self, job_type: str, args_type: type[Any]) -> None:
        self._type = job_type
        self._decode = msgspec.json.Decoder(_Body[args_type]).decode  # type: ignore[valid-type]

    def __call__(self, fields: Mapping[bytes, bytes]) -> tuple[Job[Any], Meta] | None:
        raw_id = fields.get(F_ID)
        data = fields.get(F_BODY)
        if raw_id is None or data is None or fields.get(F_VERSION) != _VERSION_BYTES:
            return None
        try:
            body = self._decode(data)
            job_id = raw_id.decode()
        except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
            return None
        if body.type != self._type:
            return None
        # The body itself gives the trace and enqueued_at: no Envelope to build.
        return _job(job_id, body), body


def _job(job_id: str, body: _Body[Any]) -> Job[Any]:
    """The Job of a parsed body: both decode paths build it here."""
    job: _JobDraft[Any] = _JobDraft()
    job.id = job_id
    job.type = body.type
    job.account_id = body.account_id
    job.identity = body.identity
    job.request_id = body.request_id
    job.args = body.args
    job.__class__ = Job  # type: ignore[assignment]
    return job  # type: ignore[return-value]


class _JobDraft(Generic[ArgsT]):
    """A Job under construction: the same slots, without the frozen dataclass's ``__setattr__``.

    Building a Job for every delivery through its ``__init__`` costs several times what filling
    its slots does (the generated ``__init__`` calls ``object.__setattr__`` per field; the
    figures: benchmarks/README.md, "Figures behind the code"). ``_job`` fills a draft, then makes
    it a Job by ``__class__`` assignment, which Python allows between classes of the same layout:
    the result is a Job like any other, every field set (tests/unit/test_codec_fast_path.py
    checks it).
    """

    __slots__ = Job.__slots__

    id: str | None
    type: str
    account_id: int
    identity: Principal
    request_id: str | None
    args: Any


assert _JobDraft.__slots__ == tuple(f.name for f in dataclasses.fields(Job)), (
    "_job fills every field of Job"
)


def convert_args(args_type: type[Any], raw: Any, *, job_id: str | None, job_type: str) -> Any:
    """Turn decoded JSON (or an args instance) into ``args_type``, checking every field's type."""
    if isinstance(raw, args_type):
        return raw
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raise InvalidJobError(
            f"args is a {type(raw).__name__}, expected {args_type.__name__}",
            job_id=job_id,
            job_type=job_type,
        )
    try:
        return msgspec.convert(raw, type=args_type)
    except msgspec.ValidationError as exc:
        raise InvalidJobError(
            f"invalid args: {_where(exc, 'args')}", job_id=job_id, job_type=job_type
        ) from exc


#: The largest checkpoint a step may save, encoded (bytes of JSON).
MAX_CHECKPOINT = 64 * 1024


class CheckpointCodec:
    """A job type's checkpoint to JSON and back: typed by msgspec when the type declares a
    checkpoint class (``JobType(checkpoint=...)``), plain JSON values otherwise.

    Made once per job type, at registration (a type msgspec cannot decode is a ConfigError
    then, not at the first save).
    """

    __slots__ = ("_decode", "type")

    def __init__(self, checkpoint: type[Any] | None, *, job_type: str) -> None:
        self.type = checkpoint
        if checkpoint is None:
            self._decode: Any = orjson.loads
            return
        try:
            self._decode = msgspec.json.Decoder(checkpoint).decode
        except TypeError as exc:
            raise ConfigError(
                f"job type {job_type!r}: checkpoint type {checkpoint!r} cannot be decoded "
                f"from JSON: {exc}"
            ) from None

    def encode(self, value: Any, *, job_id: str | None, job_type: str) -> tuple[bytes, Any]:
        """``value`` as JSON, and what decoding that JSON gives (what a later delivery that
        resumes the job will see, so the next step of this delivery sees it too).

        Raises CheckpointError: not JSON, not of the checkpoint type, over MAX_CHECKPOINT.
        """
        try:
            data = orjson.dumps(value, default=_default)
        except TypeError as exc:
            raise CheckpointError(
                f"checkpoint cannot be encoded as JSON: {exc}", job_id=job_id, job_type=job_type
            ) from exc
        if len(data) > MAX_CHECKPOINT:
            raise CheckpointError(
                f"checkpoint is {len(data)} bytes encoded, over the limit of {MAX_CHECKPOINT}",
                job_id=job_id,
                job_type=job_type,
            )
        try:
            return data, self._decode(data)
        except msgspec.ValidationError as exc:
            name = getattr(self.type, "__name__", repr(self.type))
            raise CheckpointError(
                f"checkpoint does not fit {name}: {_where(exc, 'checkpoint')}",
                job_id=job_id,
                job_type=job_type,
            ) from exc

    def decode(self, data: bytes) -> Any:
        """A stored checkpoint; raises ValueError (msgspec's and orjson's errors are) when it
        does not decode into the checkpoint type any more."""
        return self._decode(data)


def _where(exc: msgspec.ValidationError, root: str) -> str:
    """msgspec says '... - at `$.count`'; name the field as ``args.count`` instead."""
    text = str(exc)
    message, sep, path = text.rpartition(" - at `")
    if not sep:
        return text
    return f"{root}{path.rstrip('`')[1:]}: {message}"
