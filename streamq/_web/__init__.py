"""``streamq web``: the live dashboard and its JSON API (docs/web.md).

Optional: it needs the ``web`` extra (``pip install 'streamq[web]'``: starlette and uvicorn).
Nothing here is imported by the engine or the other commands, and nothing here imports the CLI:
the JSON documents and the formatting come from ``streamq._views``, which the CLI shares.

- ``_guard``: the safety rules, in plain ASGI: token, Host check, session and CSRF, headers.
- ``_pages``: the HTML, every value from a job escaped.
- ``_history``: the samples behind the live charts.
- ``_metrics``: ``GET /metrics``, the stats in the Prometheus text format (no library needed).
- ``app``: the Starlette application (the only module that imports starlette).
- ``serve``: running it (the only module that imports uvicorn).
"""
