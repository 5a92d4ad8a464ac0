"""LangChain's ``CosmosDBChatMessageHistory`` (langchain-community), for comparison only.

What it does, in the version pinned in requirements-dev.txt: one document per session, id the
session id, partitioned on ``/user_id`` in a container it creates itself, holding a
``messages`` array of ``messages_to_dict`` dicts; ``load_messages()`` point-reads that document
and ``add_message()`` appends to the in-memory list and upserts the whole document again.

A turn is what a LangChain app does per turn: read the history for the model, add the user
message, add the AI message. One history object (and so one sync CosmosClient) serves every
turn, as in a long-lived process; its database, container and account metadata requests happen
once, in a warm-up conversation before the counted turns, as Parley's do.
"""

from __future__ import annotations

import warnings
from typing import Any

from bench.common import Cosmos, message_text
from bench.transport import SyncCountingTransport, Tally
from shared.llm.echo import echo_reply

CONTAINER = "LangChainHistory"
WARMUP_USER = "warmup@bench.local"
USER = "langchain@bench.local"


def _history_class() -> Any:
    # langchain-community warns on import that it is being sunset; the benchmark measures the
    # history class as apps deployed it, so the warning is noise in the benchmark's log.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.chat_message_histories import CosmosDBChatMessageHistory
    return CosmosDBChatMessageHistory


def turn(history: Any, text: str) -> None:
    """One chat turn through the history's public API."""
    from langchain_core.messages import AIMessage, HumanMessage

    history.load_messages()  # the history the model is given
    history.add_message(HumanMessage(content=text))
    # The same answer as Parley's echo model: N = the earlier messages it was given.
    history.add_message(AIMessage(content=echo_reply(len(history.messages) - 1, text)))


def _switch(history: Any, user_id: str, session_id: str) -> None:
    # session_id and user_id are plain attributes the class documents as overwritable.
    history.user_id, history.session_id, history.messages = user_id, session_id, []


def run_turns(cosmos: Cosmos, database: str, turns: int) -> list[Tally]:
    """Each counted turn's tally, turn 1 first."""
    transport = SyncCountingTransport()
    tallies: list[Tally] = []
    with transport, warnings.catch_warnings():
        if not cosmos.verify_tls:
            # The local server's certificate is self-signed and deliberately not verified:
            # urllib3 would warn on every request.
            from urllib3.exceptions import InsecureRequestWarning

            warnings.simplefilter("ignore", InsecureRequestWarning)
        history = _history_class()(
            cosmos_endpoint=cosmos.endpoint,
            cosmos_database=database,
            cosmos_container=CONTAINER,
            session_id="warmup",
            user_id=WARMUP_USER,
            credential=cosmos.key,
            # The class passes these to azure.cosmos.CosmosClient: our transport needs no patch.
            cosmos_client_kwargs={"transport": transport, "connection_verify": cosmos.verify_tls},
        )
        # Closing the transport, not the history, ends the client: the history's own context
        # manager would upsert once more on exit.
        history.prepare_cosmos()
        turn(history, "warm-up")
        _switch(history, USER, "langchain-session")
        for number in range(1, turns + 1):
            start = len(transport.log)
            turn(history, message_text(number))
            tallies.append(Tally.of(transport.log[start:]))
    return tallies
