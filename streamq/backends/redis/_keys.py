"""The key layout: which streams a type has, their keys, and which stream an id names.

Keys of one stream share its hash tag (``{prefix}:{TYPE}:jobs``, ``:dead``, ``:stats``,
``:scheduled``, ``:cancels``, ``:progress:{JOB_ID}`` per multi-step job, ``:ended:{JOB_ID}``
per cancelled job, ``:finished`` and ``:finished:marks``: finished jobs' records (see
``_finished``), ``:flow:*``: flow control's slots and held jobs), so every
multi-key script stays in one cluster slot. A partitioned type has one such set of keys per
partition (see ``_partitions``); a type given a priority has one more set per level beside its
default stream, ``{prefix}:{TYPE}:high:jobs`` and ``:low:jobs`` and theirs, in the same slot
(see ``streamq/backends/_priority.py``). Nothing here talks to the server: the partition counts the
server records are learned by ``_groups`` and written here with :meth:`KeyLayout.record_count`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from redis.crc import key_slot

from streamq.backends._base import F_BODY, F_PRIORITY, F_UNIQUE, Fields, JobEnd
from streamq.backends._partitions import Partitions, normalize
from streamq.backends._priority import DEFAULT, PRIORITIES
from streamq.backends.redis import _partitions
from streamq.exceptions import ConfigError


@dataclass(eq=False, slots=True)
class StreamKeys:
    """The keys of one stream of a type: the whole type, or one of its partitions."""

    type: str
    #: the partition number, or None when the type is not partitioned (plain entry ids)
    part: int | None
    jobs: str
    dead: str
    stats: str
    #: the priority level of its jobs (``default``: the type's plain or partition stream)
    level: str = DEFAULT
    #: the sorted set of delayed jobs, due time (ms) as score (see ``_schedule``)
    scheduled: str = field(init=False)
    slot: int = field(init=False)
    #: whether its entry ids are plain (not partitioned, default level)
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        self.scheduled = self.jobs.removesuffix(":jobs") + ":scheduled"
        self.slot = key_slot(self.jobs.encode())
        self.plain = self.part is None and self.level == DEFAULT

    def unique(self, key: str) -> str:
        """The key that holds a unique key's job id, in this stream's slot (see ``_unique``)."""
        return f"{self.jobs.removesuffix(':jobs')}:unique:{key}"

    def ref(self, entry_id: str) -> str:
        """The id callers see: the entry id, with ``@P`` on a partitioned type and ``@LEVEL``
        on a level stream (``1700000000000-0@high``)."""
        if self.plain:
            return entry_id
        return f"{entry_id}@{self.level if self.level != DEFAULT else self.part}"

    def progress(self, job_id: str) -> str:
        """The hash of the step progress of job ``job_id`` (one of this stream's jobs: a job's
        retries and redeliveries stay in its stream)."""
        return f"{self.jobs.removesuffix(':jobs')}:progress:{job_id}"

    def cancels(self) -> str:
        """The hash of the cancel requests of this stream's running jobs (see ``_cancel``)."""
        return f"{self.jobs.removesuffix(':jobs')}:cancels"

    def ended(self, job_id: str) -> str:
        """The record a cancelled job of this stream leaves (see ``_cancel``)."""
        return f"{self.jobs.removesuffix(':jobs')}:ended:{job_id}"

    def finished(self) -> str:
        """The stream of this stream's finished-job records, an entry per ack call
        (``done_record.lua``)."""
        return f"{self.jobs.removesuffix(':jobs')}:finished"

    def finished_marks(self) -> str:
        """The small hash of where :meth:`finished` is trimmed to keep the cap (fields 0 to 8:
        the entry written as the ``processed`` count passed each eighth of the cap)."""
        return f"{self.jobs.removesuffix(':jobs')}:finished:marks"

    def flow(self, what: str) -> str:
        """A key of this stream's flow control (docs/flow-control.md): ``index`` (key value
        -> its jobs running and held), ``later`` (the rate queue), ``run:VALUE`` (a key value's
        slots), ``held:VALUE`` (its held jobs), ``rate`` / ``rate:VALUE`` (a rate's next start).
        A type's levels share the default stream's (one limit for all its jobs)."""
        base = self.jobs.removesuffix(":jobs")
        if self.level != DEFAULT:
            base = base.removesuffix(f":{self.level}")
        return f"{base}:flow:{what}"

    def end_keys(self, end: JobEnd) -> list[str]:
        """The keys the end of ``end``'s job deletes (its end-of-job clean-up)."""
        return [self.progress(end.job_id)] if end.progress else []


class IdsByStream(dict[StreamKeys, list[str]]):
    """Entry ids per stream (see :meth:`KeyLayout.ids_by_stream`), and how callers named them."""

    __slots__ = ("bad", "plain")

    def __init__(self) -> None:
        super().__init__()
        #: ids that name no stream of the type
        self.bad: list[str] = []
        #: partition 0's entry ids given without ``@0`` (delivered before the type grew)
        self.plain: set[str] = set()

    def ref(self, s: StreamKeys, entry_id: str) -> str:
        """The id of an entry of ``s`` as the caller named it."""
        if s.plain or (s.level == DEFAULT and self.plain and entry_id in self.plain):
            return entry_id
        return s.ref(entry_id)


class KeyLayout:
    """The streams and keys of every type, under one prefix.

    Args:
        prefix: first part of every key.
        partitions: per type, its :class:`Partitions` (or a plain count).
    """

    def __init__(self, prefix: str, partitions: Mapping[str, Partitions | int] | None) -> None:
        self.prefix = prefix
        self.partitions = normalize(partitions)
        #: seconds before a partition count read from the server is read again
        self.relearn_s = 5.0
        #: when each type's recorded partition count was last read (monotonic seconds)
        self.learned_at: dict[str, float] = {}
        # Partition counts recorded on the server.
        self._recorded: dict[str, int] = {}
        # The types the server records as having level streams (given a priority once).
        self._levelled: set[str] = set()
        self._streams_of: dict[str, list[StreamKeys]] = {}
        self._round_robin: dict[str, Iterator[int]] = {}

    def streams(self, type: str) -> list[StreamKeys]:
        """The streams of ``type``: one, or one per partition.

        The count is the larger of this process's setting and the count recorded on the server
        (which any process's larger setting raises), so a process set to fewer partitions than
        the type has, or to none, still reads and inspects all of them.
        """
        found = self._streams_of.get(type)
        if found is None:
            spec = self.partitions.get(type)
            n = max(spec.count if spec else 1, self._recorded.get(type, 1))
            parts: list[int | None] = list(range(n)) if n > 1 else [None]
            found = []
            for p in parts:
                base = f"{self.prefix}:{{{_partitions.hash_tag(type, p or 0)}}}"
                found.append(StreamKeys(type, p, f"{base}:jobs", f"{base}:dead", f"{base}:stats"))
            if type in self._levelled:
                for level in PRIORITIES:
                    if level != DEFAULT:
                        base = f"{self.prefix}:{{{type}}}:{level}"
                        keys = (f"{base}:jobs", f"{base}:dead", f"{base}:stats")
                        found.append(StreamKeys(type, None, *keys, level=level))
            self._streams_of[type] = found
        return found

    def meta_key(self, type: str) -> str:
        """The hash recording how many partitions ``type`` has (in partition 0's slot)."""
        return f"{self.prefix}:{{{type}}}:meta"

    def ticks_key(self, type: str) -> str:
        """The hash of ``type``'s periodic schedules: name to its last fired tick (epoch ms),
        in partition 0's slot (the meta key's)."""
        return f"{self.prefix}:{{{type}}}:ticks"

    def ticks_slot(self, type: str) -> int:
        """The cluster slot of :meth:`ticks_key`."""
        return key_slot(self.ticks_key(type).encode())

    def paused_key(self, type: str) -> str:
        """The hash recording that ``type`` is paused (since when, why), in partition 0's slot
        (the meta key's); no key: not paused."""
        return f"{self.prefix}:{{{type}}}:paused"

    def worker_key(self, worker_id: str) -> str:
        """The hash of one worker's heartbeat record."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def workers_key(self) -> str:
        """The set of live workers' ids."""
        return f"{self.prefix}:workers"

    def wanted_count(self, type: str) -> int:
        """This process's partition count for ``type`` (0 when it sets none)."""
        spec = self.partitions.get(type)
        return spec.count if spec is not None else 0

    def stale(self, types: Sequence[str], now: float) -> list[str]:
        """The types whose recorded count was last read more than ``relearn_s`` before ``now``."""
        learned, relearn_s = self.learned_at, self.relearn_s
        return [t for t in types if now - learned.get(t, -1e9) > relearn_s]

    def record_count(self, type: str, n: int, now: float, levels: bool = False) -> bool:
        """Note the count the server records for ``type`` (read at ``now``), and whether it
        has level streams; True when the type's streams changed here."""
        self.learned_at[type] = now
        if n == self._recorded.get(type, 1) and levels == (type in self._levelled):
            return False
        before = len(self.streams(type))
        self._recorded[type] = n
        if levels:
            self._levelled.add(type)
        else:
            self._levelled.discard(type)
        del self._streams_of[type]
        return len(self.streams(type)) != before

    def has_levels(self, type: str) -> bool:
        """Whether ``type`` is known here to have level streams."""
        return type in self._levelled

    def levels_of(self, type: str) -> list[StreamKeys] | None:
        """The level streams of an unpartitioned type with levels, highest first (what one
        ``read_levels.lua`` call reads); None for any other type."""
        if type not in self._levelled:
            return None
        streams = self.streams(type)
        if len(streams) != 3:
            return None
        return [streams[1], streams[0], streams[2]]

    def ids_by_stream(self, type: str, refs: Sequence[str]) -> IdsByStream:
        """Ids callers gave (``ID`` or ``ID@P``) as entry ids per stream, in order.

        An id without ``@P`` on a partitioned type was delivered before the type grew: it is
        partition 0's (that stream is the type's old one). An id naming no partition of the type
        goes to ``bad``, not to a stream: the caller answers for that id alone.
        """
        streams = self.streams(type)
        out = IdsByStream()
        if len(streams) == 1:
            out[streams[0]] = list(refs)
            return out
        for ref in refs:
            try:
                p, entry_id = self.split(type, ref)
            except ConfigError:
                out.bad.append(ref)
                continue
            if p == 0 and "@" not in ref:
                out.plain.add(entry_id)
            out.setdefault(streams[p], []).append(entry_id)
        return out

    def split(self, type: str, ref: str) -> tuple[int, str]:
        """(index in :meth:`streams`, entry id) of an id callers gave: ``ID``, ``ID@P`` or
        ``ID@LEVEL``.

        Raises:
            ConfigError: it names no stream of the type.
        """
        streams = self.streams(type)
        if type in self._levelled:
            entry_id, _, tail = ref.rpartition("@")
            if tail in PRIORITIES and tail != DEFAULT and entry_id:
                for i, s in enumerate(streams):
                    if s.level == tail:
                        return i, entry_id
            parts = sum(1 for s in streams if s.level == DEFAULT)
            return _partitions.split_id(ref, parts)
        return _partitions.split_id(ref, len(streams))

    def end_keys_by_stream(
        self, type: str, ends: Sequence[JobEnd]
    ) -> dict[StreamKeys, list[tuple[str, str]]]:
        """The end-of-job keys of ``ends`` per stream, each with the (plain) entry id whose end
        deletes it: what ``ack.lua`` takes after its ids."""
        located = self.ids_by_stream(type, [e.entry_id for e in ends])
        by_ref = {e.entry_id: e for e in ends}
        out: dict[StreamKeys, list[tuple[str, str]]] = {}
        for s, ids in located.items():
            pairs = out[s] = []
            for entry_id in ids:
                end = by_ref.get(located.ref(s, entry_id))
                if end is not None:
                    pairs.extend((entry_id, key) for key in s.end_keys(end))
        return out

    def checked_ids_by_stream(self, type: str, refs: Sequence[str]) -> IdsByStream:
        """:meth:`ids_by_stream` for ids a person gave (inspection, the CLI): a bad one raises."""
        out = self.ids_by_stream(type, refs)
        if out.bad:
            self.split(type, out.bad[0])  # raises its ConfigError
        return out

    def stream_for_new_job(self, type: str, fields: Fields) -> StreamKeys:
        """The stream a new job of ``type`` goes to: by its partition key, else in turn."""
        streams = self.streams(type)
        if len(streams) == 1:
            return streams[0]
        level = fields.get(F_PRIORITY)
        if level is not None and type in self._levelled:
            want = level.decode()
            for s in streams:
                if s.level == want:
                    return s
        parts = [s for s in streams if s.level == DEFAULT]
        if len(parts) == 1:
            return parts[0]
        streams = parts
        spec = self.partitions.get(type)
        unique = fields.get(F_UNIQUE)
        if unique is not None and (spec is None or spec.key is None):
            # One unique key, one partition: its holder is found where the next enqueue looks.
            return streams[_partitions.partition_of_key(unique, len(streams))]
        if spec is None or spec.key is None:
            rr = self._round_robin.get(type)
            if rr is None:
                rr = self._round_robin[type] = itertools.count(os.getpid())
            return streams[next(rr) % len(streams)]
        value = _partitions.key_value(fields.get(F_BODY, b""), spec.key)
        return streams[_partitions.partition_of_key(value, len(streams))]
