"""The Redis backend: one stream per job type (or per partition), read through one consumer group.

The only package that imports ``redis``. ``_backend`` composes the modules beside it (its
docstring says which owns what); the Lua scripts are the ``.lua`` files of this folder.
"""

from __future__ import annotations

from streamq.backends.redis._backend import RedisBackend
from streamq.backends.redis._groups import too_old

__all__ = ["RedisBackend", "too_old"]
