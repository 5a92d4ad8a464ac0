"""The local stack that tests, the benchmark and the soak start: the Cosmos DB server
(``cosmos``), the local host as a process (``host``), the Web PubSub stand-in (``webpubsub``),
and conversations written straight into a store (``seeding``). Test-only helpers (fault
injection, scenarios, fixtures) stay in tests/support."""
