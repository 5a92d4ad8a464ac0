"""Fixtures of the real-time suites: a local Web PubSub stand-in per module."""

from tests.support.webpubsub_server import webpubsub  # noqa: F401  (fixture)
