"""What the parts of one RedisBackend share: the wire, the key layout, the scripts, the router
and the consumer group's name."""

from __future__ import annotations

from dataclasses import dataclass

from streamq.backends.redis._keys import KeyLayout
from streamq.backends.redis._routing import Router
from streamq.backends.redis._scripts import ScriptRegistry
from streamq.backends.redis._wire import Wire


@dataclass(frozen=True, slots=True)
class Shared:
    """The parts every concern of the backend builds on (made once, by ``_backend``)."""

    wire: Wire
    keys: KeyLayout
    scripts: ScriptRegistry
    router: Router
    #: the consumer group's name
    group: str
