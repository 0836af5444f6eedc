"""What an operations team watches: Prometheus metrics (``metrics``: every ``racksmith_*``
family, defined once), scrape-time gauges read from JetStream and the database (``sampling``),
BMC request and operation instrumentation (``bmc``), the broker's middlewares (``messaging``) and
OpenTelemetry tracing, off unless ``OTEL_*`` variables configure an exporter (``tracing``)."""
