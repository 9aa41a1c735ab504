"""The production runtime: Kafka consumers and producers around the PostgreSQL stores.

``bonychat serve`` (see :mod:`services.runtime.serve`) runs the ingest, conversation
(with its outbox relay) and projection services plus the HTTP app. How they fit
together, and why the result is exactly-once, is written up in ``docs/runtime.md``.
"""
