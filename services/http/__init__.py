"""The HTTP surface of CONTRACT §5: gateway ingest, analytics queries, ops endpoints.

Build it with :func:`services.http.app.create_app`; the caller (``bonychat serve``
or a test) supplies the event sink, the read model and the Prometheus registry.
"""
