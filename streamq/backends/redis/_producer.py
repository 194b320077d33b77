"""The producer side: appending jobs (MULTI/EXEC, or ``enqueue.lua``), and waiting for replicas
(``WAIT``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rexc

from streamq.backends._base import F_PRIORITY, Fields
from streamq.backends.redis._groups import StreamGroups
from streamq.backends.redis._keys import StreamKeys
from streamq.backends.redis._replies import text
from streamq.backends.redis._shared import Shared
from streamq.backends.redis._wire import Command
from streamq.exceptions import BackendError, ConfigError


class Producer:
    """Appends jobs to their streams, one script call per stream and one round trip per node.

    Args:
        wait_replicas: after each enqueue, wait until this many replicas have the jobs
            (``WAIT``); an enqueue they do not confirm in the router's ``wait_timeout_ms``
            raises.
    """

    def __init__(self, shared: Shared, groups: StreamGroups, wait_replicas: int) -> None:
        self._wire = shared.wire
        self._keys = shared.keys
        self._scripts = shared.scripts
        self._router = shared.router
        self._groups = groups
        self.wait_replicas = wait_replicas

    async def enqueue_many(self, items: Sequence[tuple[str, Fields]]) -> list[str]:
        """Append many jobs in one round trip per node, and count them.

        On one server, the jobs go in one MULTI/EXEC of plain XADDs and one HINCRBY per stream
        (one job alone too): all or none, and about half the server's time per job that a
        script's XADDs take, a quarter for one job (benchmarks/test_bench_server_cost.py; the
        client reads a reply per command, about 10 µs more for one job). Each stream's share
        on a cluster (no transaction across slots) goes in one ``enqueue.lua`` call (atomic,
        like every script).
        """
        if not items:
            return []
        by_stream = await self.streams_for(items)
        batches = [(s, [items[i][1] for i in idx]) for s, idx in by_stream.items()]
        for _, batch in batches:
            if not batch[0] or any(len(f) != len(batch[0]) for f in batch):
                raise ConfigError("every job of one enqueue must have the same, non-empty fields")
        if self._wire.cluster:
            sha = self._scripts.sha("enqueue")
            work = [(s.jobs, ("EVALSHA", sha, 2, *_append_args(s, b))) for s, b in batches]
            # Every node's share goes (whole=True: a node that fails does not stop the others),
            # so an error can say how many jobs of the call were written.
            replies = await self._router.send_to_owners(
                "producer", work, wait=self.wait_replicas, whole=True
            )
            failed = [r for r in replies if isinstance(r, BaseException)]
            if failed:
                written = sum(
                    len(batch)
                    for (_, batch), reply in zip(batches, replies, strict=True)
                    if not isinstance(reply, BaseException)
                )
                raise self.partly_written(failed[0], written, len(items))
        else:
            replies = await self._transaction(batches)
        out: list[str] = [""] * len(items)
        for (s, idx), ids in zip(by_stream.items(), replies, strict=True):
            for i, entry_id in zip(idx, ids, strict=True):
                out[i] = s.ref(text(entry_id))
        return out

    async def streams_for(self, items: Sequence[tuple[str, Fields]]) -> dict[StreamKeys, list[int]]:
        """The stream each new job goes to (the indexes of ``items`` per stream)."""
        # Record (first jobs of a type from this process) or learn again (every relearn_s) the
        # type's partitions, as readers do: a producer that kept an old count would send one
        # key to another partition than producers with the new count, out of order.
        keys = self._keys
        now = time.monotonic()
        learned, relearn_s = keys.learned_at, keys.relearn_s
        stale = {t for t, _ in items if now - learned.get(t, -1e9) > relearn_s}
        # A type's first job with a priority records that the type has level streams.
        levels = {t for t, f in items if F_PRIORITY in f and not keys.has_levels(t)}
        if stale or levels:
            for t in levels:
                if keys.wanted_count(t) > 1 or len(keys.streams(t)) > 1:
                    raise _partitioned(t)
            types = sorted(stale | levels)
            await self._groups.learn_partition_counts(types, grow=True, levels=sorted(levels))
        for t in levels:
            if len(keys.streams(t)) != 3:
                raise _partitioned(t)
        stream_for = keys.stream_for_new_job
        by_stream: dict[StreamKeys, list[int]] = {}
        for i, (t, fields) in enumerate(items):
            by_stream.setdefault(stream_for(t, fields), []).append(i)
        return by_stream

    def partly_written(self, exc: BaseException, written: int, total: int) -> BackendError:
        err = self._wire.backend_error(exc)
        if written:
            return BackendError(
                f"{err} ({written} of {total} jobs were enqueued; the others may not have been)"
            )
        return err

    async def _transaction(self, batches: list[tuple[StreamKeys, list[Fields]]]) -> list[Any]:
        """The batches on one server, all or none: MULTI, each stream's XADDs and its
        ``HINCRBY enqueued <n>``, EXEC; the entry ids of each batch in order."""
        commands: list[Command] = [("MULTI",)]
        for s, batch in batches:
            jobs = s.jobs
            for fields in batch:
                args: list[Any] = ["XADD", jobs, "*"]
                for kv in fields.items():
                    args += kv
                commands.append(tuple(args))
            commands.append(("HINCRBY", s.stats, "enqueued", len(batch)))
        commands.append(("EXEC",))
        router = self._router
        if self.wait_replicas:
            commands.append(("WAIT", self.wait_replicas, router.wait_timeout_ms))
        wire = self._wire
        replies = await wire.exchange(wire.held("producer"), commands)
        confirmed = replies.pop() if self.wait_replicas else None
        for reply in replies:
            if isinstance(reply, rexc.RedisError):
                raise wire.backend_error(reply)
        results = replies[-1]
        if results is None:  # pragma: no cover - no WATCH, so EXEC is never aborted
            raise BackendError("the server aborted the enqueue transaction")
        for result in results:
            if isinstance(result, rexc.RedisError):
                raise wire.backend_error(result)
        if confirmed is not None:
            router.check_wait(confirmed, self.wait_replicas)
        out: list[Any] = []
        at = 0
        for _, batch in batches:
            out.append(results[at : at + len(batch)])
            at += len(batch) + 1  # past the batch's HINCRBY
        return out


def _partitioned(type: str) -> ConfigError:
    return ConfigError(
        f"job type {type!r} is partitioned: priorities are for types of one stream "
        "(enqueue its jobs without a priority)"
    )


def _append_args(s: StreamKeys, batch: Sequence[Fields]) -> list[Any]:
    """KEYS and ARGV of enqueue.lua: jobs, stats; pairs per job, then each job's fields."""
    args: list[Any] = [s.jobs, s.stats, len(batch[0])]
    for fields in batch:
        for kv in fields.items():
            args += kv
    return args
