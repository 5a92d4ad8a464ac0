"""Sending analytics events (``shared.events``) to Application Insights, in Azure only.

``azure-monitor-opentelemetry`` (the distribution Azure documents for Python Functions) is
configured on the first event an instance emits, never at import: importing it loads the whole
OpenTelemetry SDK and its instrumentations, which the cold start has no time for
(``bench/coldstart.py``). Only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (the
infrastructure sets it; locally and in tests it is not) and only for the ``parley.events``
logger: the host already forwards the app's other logs. The exporter authenticates with the
app's managed identity (the component accepts no instrumentation-key writes).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("parley.telemetry")

CONNECTION_STRING_VARIABLE = "APPLICATIONINSIGHTS_CONNECTION_STRING"
EVENTS_LOGGER = "parley.events"

# The distribution's instrumentations, all off: the host traces requests itself.
INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)
_lock = threading.Lock()
_configured = False


def _configure_azure_monitor(connection_string: str) -> None:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    client_id = os.environ.get("AZURE_CLIENT_ID")
    credential = (
        ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    )
    configure_azure_monitor(
        connection_string=connection_string,
        credential=credential,
        logger_name=EVENTS_LOGGER,
        # Events only: the host forwards the rest of the logs itself.
        enable_live_metrics=False,
        instrumentation_options={name: {"enabled": False} for name in INSTRUMENTATIONS},
    )


# Replaced by tests (a stand-in that records the call): the real one needs Azure.
configure: Callable[[str], None] = _configure_azure_monitor


def ensure_configured() -> None:
    """Configure the exporter once per process when a connection string is set. A failure is
    logged (its type) and not retried: analytics never fail a request."""
    global _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        _configured = True
        connection_string = os.environ.get(CONNECTION_STRING_VARIABLE, "")
        if not connection_string:
            return
        try:
            configure(connection_string)
        except Exception as exc:  # the type only: a connection string is a secret
            log.warning("telemetry_not_configured %s", type(exc).__name__)


def reset_for_tests() -> None:
    global _configured
    _configured = False
