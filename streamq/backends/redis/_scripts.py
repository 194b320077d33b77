"""The script registry: the one place that loads the Lua scripts and calls them.

Multi-step changes run as the ``.lua`` files beside this module, one round trip each, every key
of a call in one hash tag. A script that uses ``owned_split`` gets ``owned.lua`` (the shared
"which of these ids does this consumer still own?") in front of its body, one that calls
``release_unique`` gets ``unique_release.lua``, one that writes a schedule member itself
(``packed``, ``unpacked``, ``server_ms``) gets ``member.lua``, one that writes finished-job records
(``record_done``) gets ``done_record.lua`` (and so ``member.lua``, whose ``server_ms`` it calls).

Two ways to call: :meth:`ScriptRegistry.call` through redis-py (one call on the pool; it loads
the script itself on NOSCRIPT), or an ``EVALSHA`` (``EVAL`` inside MULTI) that a hot path builds
with :meth:`ScriptRegistry.sha` (:meth:`ScriptRegistry.body`) and sends in an exchange of its own
(``_routing``, which loads the scripts again with :meth:`ScriptRegistry.load_commands` when a
server answers NOSCRIPT).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from streamq.backends.redis._errors import REDIS_ERRORS
from streamq.backends.redis._wire import Command, Wire

_HERE = resources.files(__package__)
_OWNED = _HERE.joinpath("owned.lua").read_text()
_RELEASE_UNIQUE = _HERE.joinpath("unique_release.lua").read_text()
_MEMBER = _HERE.joinpath("member.lua").read_text()
_DONE_RECORD = _HERE.joinpath("done_record.lua").read_text()


class ScriptRegistry:
    """The scripts of one backend, registered with its client on first use."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self._scripts: dict[str, AsyncScript] = {}

    def get(self, name: str) -> AsyncScript:
        """The script ``name`` (``name.lua``), registered with the client."""
        script = self._scripts.get(name)
        if script is None:
            body = _HERE.joinpath(f"{name}.lua").read_text()
            if "record_done(" in body:  # first: it calls server_ms (member.lua goes in front)
                body = _DONE_RECORD + body
            if "owned_split" in body:
                body = _OWNED + body
            if "release_unique(" in body:
                body = _RELEASE_UNIQUE + body
            if "packed(" in body or "server_ms(" in body:
                body = _MEMBER + body
            script = self._scripts[name] = self._wire.client.register_script(body)
        return script

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` once, through the client's pool; errors as BackendError."""
        wire = self._wire
        await wire.connect()
        try:
            return await self.get(name)(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise wire.backend_error(exc) from exc

    def sha(self, name: str) -> str:
        """The SHA1 of script ``name``: a hot path builds its ``EVALSHA`` command with it (one
        tuple of keys and arguments, no list copied on the way)."""
        return str(self.get(name).sha)

    def body(self, name: str) -> str:
        """The whole text of script ``name``, for an ``EVAL`` inside MULTI (where a missing
        script would fail alone while the rest ran)."""
        return str(self.get(name).script)

    def load_commands(self) -> list[Command]:
        """SCRIPT LOAD of every script used so far (a server restarted or failed over)."""
        return [("SCRIPT", "LOAD", script.script) for script in self._scripts.values()]
