"""The HTTP server: REST API under ``/api`` (OpenAPI at ``/api/docs``), a live stream of alerts (Server-Sent
Events), Prometheus metrics and the web UI (static files). It reads and writes the same stores the pipeline uses:
the event store, the gallery and the live-state directory. ``server`` runs it (``facewatch serve``, or inside
``facewatch run`` when ``api.enabled``)."""
