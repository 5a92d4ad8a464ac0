"""A small local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It imports ``function_app``, serves every HTTP function the app registers, with the same
routes, methods and route prefix (``host.json``), on a standard ASGI server, and runs every
timer function on its NCRONTAB schedule. Nothing is declared twice: routes and schedules are
read from the app itself.
"""
