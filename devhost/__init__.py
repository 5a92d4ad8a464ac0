"""A small local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It imports ``function_app``, serves every HTTP function the app registers, with the same
routes, methods and route prefix (``host.json``), on a standard ASGI server, and runs every
timer function on its NCRONTAB schedule. Unless ``WEBPUBSUB_ENDPOINT`` is set, it also starts
a local Web PubSub stand-in (``devhost/realtime.py``, ``tools/webpubsub/README.md``) and points
the app at it; the stand-in stops with the host. Nothing is declared twice: routes and schedules are
read from the app itself.

Its own settings, ``DEVHOST_HEADER_TIMEOUT_S`` and ``DEVHOST_BODY_TIMEOUT_S``, are read with
the app's (``shared.config``, which holds their defaults and bounds; docs/configuration.md) and
not set in Azure, whose front end bounds slow clients itself; ``devhost/timeouts.py`` applies
them.
"""
