"""A small local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It imports ``function_app``, serves every HTTP function the app registers, with the same
routes, methods and route prefix (``host.json``), on a standard ASGI server, and runs every
timer function on its NCRONTAB schedule. Unless ``WEBPUBSUB_ENDPOINT`` is set, it also starts
a local Web PubSub stand-in (``devhost/realtime.py``, ``tools/webpubsub/README.md``) and points
the app at it; the stand-in stops with the host. Nothing is declared twice: routes and schedules are
read from the app itself.

Settings of the local host only (read with the app's, in ``shared.config``; not set in Azure,
whose front end bounds slow clients itself):

- ``DEVHOST_HEADER_TIMEOUT_S`` (default 10): seconds a client has to send a request's headers,
  counted from the connection's start or from the first byte of a later request on it. When
  they are late the request is answered 408 and the connection closed (a connection that never
  sent a byte is closed without an answer).
- ``DEVHOST_BODY_TIMEOUT_S`` (default 30): seconds a client has, from the end of the headers,
  to send the whole body (a total, so dripping bytes does not keep a request alive). When it is
  late the request is answered 408 if nothing was answered yet, and the connection closed; a
  function still reading the body sees the client leave (logged as 499).
"""
