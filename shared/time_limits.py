"""How long a chat turn may take at most, and the front end's limit it must fit in.

Azure answers an HTTP-triggered function's request for at most 230 seconds, whatever the
function timeout: "Regardless of the function app timeout setting, 230 seconds is the maximum
amount of time that an HTTP triggered function can take to respond to a request. This is because
of the default idle timeout of Azure Load Balancer."
(https://learn.microsoft.com/azure/azure-functions/functions-scale#timeout, "Function app
timeout duration", note 1). A turn's settings that could need longer are refused when the
settings are read (``shared.config``) and by the stack's config (``infra/stack_config.py``):
both call ``turn_time_problem`` here, the one place the rule is written.

A streamed turn, at worst:

- the user message's writes: the request's storage budget (``STORE_TIMEOUT_S``);
- the model: every attempt (``LLM_MAX_RETRIES`` + 1) for ``LLM_TIMEOUT_S``, with the ``openai``
  SDK's backoff between them (``MODEL_RETRY_BACKOFF_S``); the turn enforces this sum as the
  answer's whole deadline (``model_budget_s``), so neither a server's Retry-After nor a stream
  that keeps trickling can stretch it;
- beside it, from the start, the model-written title (``TITLE_TIMEOUT_S``);
- the answer's write: a storage budget of its own (``STORE_TIMEOUT_S``).
"""

from __future__ import annotations

from collections.abc import Mapping

# Azure's limit for an HTTP-triggered function's answer (see above).
HTTP_RESPONSE_LIMIT_S = 230.0
# The openai SDK's pause before its retry n (0-based): min(0.5 * 2**n, 8) seconds, less a random
# 0-25 % (openai._constants INITIAL_RETRY_DELAY, MAX_RETRY_DELAY; _calculate_retry_timeout).
MODEL_RETRY_BACKOFF_S = (0.5, 8.0)

# The settings the rule reads, by their environment variable names (what the config validator
# names); the stack passes its own config keys instead.
TURN_SETTINGS: Mapping[str, str] = {
    "llm_timeout_s": "LLM_TIMEOUT_S",
    "llm_max_retries": "LLM_MAX_RETRIES",
    "store_timeout_s": "STORE_TIMEOUT_S",
    "title_timeout_s": "TITLE_TIMEOUT_S",
}


def model_budget_s(llm_timeout_s: float, llm_max_retries: int) -> float:
    """The longest the model may take for one answer: every attempt and the pauses between."""
    first, cap = MODEL_RETRY_BACKOFF_S
    pauses = sum(min(first * 2.0**n, cap) for n in range(llm_max_retries))
    return (llm_max_retries + 1) * llm_timeout_s + pauses


def turn_budget_s(
    *, llm_timeout_s: float, llm_max_retries: int, store_timeout_s: float, title_timeout_s: float
) -> float:
    """The longest a streamed turn may take, from its request to its last event."""
    model = model_budget_s(llm_timeout_s, llm_max_retries)
    return store_timeout_s + max(model, title_timeout_s) + store_timeout_s


def turn_time_problem(
    *,
    llm_timeout_s: float,
    llm_max_retries: int,
    store_timeout_s: float,
    title_timeout_s: float,
    names: Mapping[str, str] = TURN_SETTINGS,
) -> str | None:
    """Why these settings cannot answer within Azure's HTTP limit, naming them; None if they
    can."""
    budget = turn_budget_s(
        llm_timeout_s=llm_timeout_s,
        llm_max_retries=llm_max_retries,
        store_timeout_s=store_timeout_s,
        title_timeout_s=title_timeout_s,
    )
    if budget <= HTTP_RESPONSE_LIMIT_S:
        return None
    return (
        f"a chat turn could take {budget:g}s, more than the {HTTP_RESPONSE_LIMIT_S:g}s Azure "
        f"allows an HTTP-triggered function to answer in: {names['llm_timeout_s']}="
        f"{llm_timeout_s:g} for each of {llm_max_retries + 1} attempts "
        f"({names['llm_max_retries']}={llm_max_retries}) with the backoff between them, and "
        f"{names['store_timeout_s']}={store_timeout_s:g} twice (the question's and the answer's "
        f"writes); {names['title_timeout_s']}={title_timeout_s:g} runs beside the model. "
        f"Lower {names['llm_timeout_s']} or {names['llm_max_retries']} (docs/configuration.md)"
    )
