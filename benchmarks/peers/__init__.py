"""The peers side by side: streamq, streaq, taskiq, SAQ and arq on one server, in one run.

``python -m benchmarks.peers`` (``make bench-peers``) is the driver (``__main__``). Each library
has one adapter module here (``_streamq``, ``_streaq``, ``_taskiq``, ``_saq``, ``_arq``) with the
same three entry points:

- ``producer(url)``: an async context manager yielding ``send(count)``, which enqueues ``count``
  no-op jobs with the library's own batched enqueue (or its own calls, gathered in chunks);
- ``consume(url, tally, concurrency)``: one worker of the library, its handler a no-op that
  ticks the tally; it calls ``tally.start()`` just before the worker starts, waits for the tally,
  lets the library finish its last jobs, stops the worker and returns the library's own counts;
- ``leftover(url)``: what the library itself reports as still queued or in flight.

Every timed phase runs in a subprocess of its own (``_child``), which imports only that library.
See README.md for what is measured and how each peer is configured.
"""
