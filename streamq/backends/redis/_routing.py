"""Routing: which server a command goes to, and sending it again when the server says so.

On one server every command goes to it. On a Redis Cluster each goes to the node that owns
its key's slot: the commands of one call are grouped by node, one exchange per node, all nodes
at once. A command answered NOSCRIPT goes again after the scripts are loaded; MOVED (nothing
ran) again to the new owner, ASK to the node it names (after ASKING, for that command only),
TRYAGAIN after a pause that doubles. A blocking read over several slots blocks on each, and
the others are ended with CLIENT UNBLOCK as soon as one answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rexc

from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._scripts import ScriptRegistry
from streamq.backends.redis._wire import BlockedRead, Command, Wire
from streamq.exceptions import BackendError

#: One command and the key that routes it.
Work = Sequence[tuple[str, Command]]

#: How many times :meth:`Router.send_to_owners` sends a command again (NOSCRIPT, MOVED, ASK,
#: TRYAGAIN); the k-th TRYAGAIN waits TRYAGAIN_PAUSE_S * 2**k first, at most TRYAGAIN_MAX_S:
#: about 1.6 s in all, longer than a migration takes to move one type's few keys.
RESENDS = 8
TRYAGAIN_PAUSE_S = 0.01
TRYAGAIN_MAX_S = 0.5


def is_redirect(reply: Any) -> bool:
    """A reply saying the command did not run there: the slot lives elsewhere now (MOVED), is
    being moved (ASK), or its keys are split by a migration for the moment (TRYAGAIN)."""
    return isinstance(reply, rexc.AskError | rexc.TryAgainError)  # MovedError is an AskError


def is_ask(reply: Any) -> bool:
    """ASK: this one command goes to the node named, after ASKING (the slot table stays)."""
    return isinstance(reply, rexc.AskError) and not isinstance(reply, rexc.MovedError)


class Router:
    """Sends commands to the servers that own their keys, on the wire's held connections.

    Args:
        wire: the client and its connections.
        scripts: loaded again on a server that answers NOSCRIPT.
        wait_timeout_ms: how long a ``WAIT`` for replicas may take.
    """

    def __init__(self, wire: Wire, scripts: ScriptRegistry, wait_timeout_ms: int) -> None:
        self._wire = wire
        self._scripts = scripts
        self.wait_timeout_ms = wait_timeout_ms
        self._cluster = wire.cluster
        # Bound once: these run on every call of the hot paths.
        self._connect = wire.connect
        self._exchange = wire.exchange
        self._held = wire.held

    async def send_to_owners(
        self,
        purpose: str,
        work: Work,
        *,
        wait: int = 0,
        whole: bool = False,
        resends: int = RESENDS,
    ) -> list[Any]:
        """Send each command to the server (on a cluster: the node owning its key's slot) and
        return the replies in order; an error reply, or the error of a node that could not be
        reached, comes back in its place. One exchange per node, all nodes at once, on the
        connections held for ``purpose``.

        Commands answered NOSCRIPT, MOVED, ASK or TRYAGAIN go again (see the module docstring),
        at most ``resends`` times: after a failover the new owner may answer NOSCRIPT in turn.
        With ``wait``, a WAIT for that many replicas follows each node's commands. Without
        ``whole``, an error reaching a node raises.
        """
        await self._connect()
        if not self._cluster:
            commands = [c for _, c in work]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            try:
                replies: list[Any] = await self._exchange(self._held(purpose), commands)
            except BackendError as exc:
                if not whole:
                    raise
                return [exc] * len(work)
            if wait:
                self._check_wait_reply(replies, wait)
            return await self._resend_redirected(purpose, work, replies, wait, resends)
        wire = self._wire
        by_node: dict[str, tuple[Any, list[int]]] = {}
        try:
            for i, (key, _) in enumerate(work):
                node = wire.client.get_node_from_key(key)
                by_node.setdefault(node.name, (node, []))[1].append(i)
        except REDIS_ERRORS as exc:
            wire.stale = True
            raise wire.backend_error(exc) from exc

        async def one(node: Any, idx: list[int]) -> list[Any]:
            commands = [work[i][1] for i in idx]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            replies = await self._exchange(self._held(purpose, node), commands, node)
            if wait:
                self._check_wait_reply(replies, wait)
            return replies

        answers = await asyncio.gather(
            *(one(node, idx) for node, idx in by_node.values()), return_exceptions=True
        )
        replies = [None] * len(work)
        for (_, idx), answer in zip(by_node.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                if not whole:
                    raise wire.backend_error(answer)
                answer = [answer] * len(idx)
            for i, reply in zip(idx, answer, strict=True):
                replies[i] = reply
        return await self._resend_redirected(purpose, work, replies, wait, resends)

    async def _resend_redirected(
        self, purpose: str, work: Work, replies: list[Any], wait: int, resends: int
    ) -> list[Any]:
        """Send again the commands answered NOSCRIPT, MOVED, ASK or TRYAGAIN."""
        cluster = self._cluster  # one server answering MOVED is a cluster: see _errors
        redo = [
            i
            for i, r in enumerate(replies)
            if isinstance(r, rexc.NoScriptError) or (cluster and is_redirect(r))
        ]
        if not redo or resends <= 0:
            return replies
        if any(isinstance(replies[i], rexc.MovedError) for i in redo):
            self._wire.stale = True
        if any(isinstance(replies[i], rexc.TryAgainError) for i in redo):
            # A migration has moved some of the keys a script names but not all: soon it has.
            await asyncio.sleep(min(TRYAGAIN_PAUSE_S * 2 ** (RESENDS - resends), TRYAGAIN_MAX_S))
        if any(isinstance(replies[i], rexc.NoScriptError) for i in redo):
            await self._reload_scripts()
        asked = [i for i in redo if is_ask(replies[i])]
        rest = [i for i in redo if not is_ask(replies[i])]
        if rest:
            second = await self.send_to_owners(
                purpose, [work[i] for i in rest], wait=wait, whole=True, resends=resends - 1
            )
            for i, reply in zip(rest, second, strict=True):
                replies[i] = reply
        if asked:
            sub = [work[i] for i in asked]
            answers = await self._send_after_asking(purpose, sub, [replies[i] for i in asked], wait)
            answers = await self._resend_redirected(purpose, sub, answers, wait, resends - 1)
            for i, reply in zip(asked, answers, strict=True):
                replies[i] = reply
        return replies

    async def _reload_scripts(self) -> None:
        """Load the scripts again on the server, on a cluster on every master (a restart or a
        failover lost them). A master that cannot be reached is skipped: its own commands fail
        by themselves, and the others' go through."""
        commands = self._scripts.load_commands()
        nodes: list[Any] = list(self._wire.client.get_primaries()) if self._cluster else [None]
        await asyncio.gather(
            *(self._exchange(self._held("control", n), commands, n) for n in nodes),
            return_exceptions=True,
        )

    async def _send_after_asking(
        self, purpose: str, work: Work, asks: Sequence[rexc.AskError], wait: int
    ) -> list[Any]:
        """Send each command to the node its ASK names, each after an ASKING (which lets the
        node importing a slot answer for that one command), one exchange per node."""
        replies: list[Any] = list(asks)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for i, ask in enumerate(asks):
            node = self._wire.client.get_node(host=ask.host, port=ask.port)
            if node is None:  # a node this client does not know yet: learn the slots again
                self._wire.stale = True
                continue
            by_node.setdefault(node.name, (node, []))[1].append(i)

        async def one(node: Any, idx: list[int]) -> list[Any]:
            commands = [c for i in idx for c in (("ASKING",), work[i][1])]
            if wait:
                commands.append(("WAIT", wait, self.wait_timeout_ms))
            answers = await self._exchange(self._held(purpose, node), commands, node)
            confirmed = answers.pop() if wait else None
            answers = answers[1::2]
            if wait and any(not is_redirect(r) for r in answers):
                self.check_wait(confirmed, wait)
            return answers

        found = await asyncio.gather(
            *(one(node, idx) for node, idx in by_node.values()), return_exceptions=True
        )
        for (_, idx), answer in zip(by_node.values(), found, strict=True):
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer
            for n, i in enumerate(idx):
                replies[i] = answer if isinstance(answer, BaseException) else answer[n]
        return replies

    def _check_wait_reply(self, replies: list[Any], wait: int) -> None:
        """Take the WAIT reply off the end of ``replies`` and check it, unless none of the
        commands ran (all MOVED or NOSCRIPT, so they go again with a WAIT of their own; after a
        failover the node may even be a replica now, which refuses WAIT)."""
        confirmed = replies.pop()
        if any(not (is_redirect(r) or isinstance(r, rexc.NoScriptError)) for r in replies):
            self.check_wait(confirmed, wait)

    def check_wait(self, reply: Any, wanted: int) -> None:
        """Raise unless a WAIT's ``reply`` says ``wanted`` replicas have the writes."""
        if isinstance(reply, BaseException):
            raise self._wire.backend_error(reply)
        if int(reply) < wanted:
            raise BackendError(
                f"enqueued, but only {int(reply)} of {wanted} replicas confirmed it "
                f"within {self.wait_timeout_ms} ms: it may be lost if the master fails now"
            )

    async def block_on_each_slot(self, commands: Sequence[tuple[str, int, Command]]) -> list[Any]:
        """Blocking reads (``(key, slot, command)``), each on its own connection to the node
        owning its slot, all at once; their replies in order, an error in its place.

        When the first answers, the others are unblocked (CLIENT UNBLOCK: they answer as if
        their time ran out, or with what they had already read), so nothing read is dropped.
        """
        wire = self._wire
        await wire.connect()
        try:
            nodes = [wire.client.get_node_from_key(key) for key, _, _ in commands]
        except REDIS_ERRORS as exc:
            wire.stale = True
            raise wire.backend_error(exc) from exc
        boxes = [BlockedRead() for _ in commands]
        # One connection per blocking read of a slot (two reads of one slot block side by side).
        slots = [slot for _, slot, _ in commands]
        nth = [slots[:i].count(slots[i]) for i in range(len(slots))]

        async def one(i: int) -> Any:
            held = wire.held(f"block:{slots[i]}:{nth[i]}", nodes[i])
            conn, dedicated = await wire.acquire(held, nodes[i])
            try:
                _, reply = await wire.roundtrip(conn, [("CLIENT", "ID"), commands[i][2]], boxes[i])
                return reply
            except REDIS_ERRORS as exc:
                wire.stale = True
                raise wire.backend_error(exc) from exc
            finally:
                boxes[i].known.set()
                await wire.release(held, nodes[i], conn, dedicated)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(commands))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task, box, node in zip(tasks, boxes, nodes, strict=True):
                if not task.done():
                    await box.known.wait()
                    if box.client_id is not None:
                        await self._unblock(task, node, box.client_id)
            replies = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
        for reply in replies:
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _unblock(self, task: asyncio.Future[Any], node: Any, client_id: int) -> None:
        """End a blocking read early. Its XREADGROUP went out with the CLIENT ID that told us
        ``client_id``, but may not have reached the server yet: then CLIENT UNBLOCK answers 0,
        and goes again until it ends the read or the read ends by itself."""
        unblock: list[Command] = [("CLIENT", "UNBLOCK", client_id)]
        while not task.done():
            try:
                (n,) = await self._exchange(self._held("control", node), unblock, node)
            except BackendError:
                return  # the read ends at its own BLOCK timeout instead
            if n == 1:
                return
            await asyncio.wait({task}, timeout=0.002)

    async def on_every_master(self, *command: Any) -> list[Any]:
        """One command's reply from the server (on a cluster, from every master), through the
        pool (these are rare calls: no connection is held for them); an error reply comes back
        in its place."""
        wire = self._wire
        await wire.connect()
        nodes: list[Any] = list(wire.client.get_primaries()) if self._cluster else [None]
        out: list[Any] = []
        for node in nodes:
            where = {} if node is None else {"target_nodes": node}
            try:
                out.append(await wire.client.execute_command(*command, **where))
            except rexc.ResponseError as exc:
                out.append(exc)
            except REDIS_ERRORS as exc:
                raise wire.backend_error(exc) from exc
        return out
