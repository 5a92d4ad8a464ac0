"""Parley's Pulumi program (``Pulumi.yaml`` at the repository root names this folder as main).

One module per concern: ``stack_config`` (the ``pulumi config`` keys, validated), ``identity``
(the user-assigned identity and role assignments), ``data`` (Cosmos DB), ``ai`` (Azure OpenAI),
``monitoring`` (Log Analytics, Application Insights, alerts) and ``app`` (storage, plan, Function
App, Easy Auth). ``__main__`` composes them.
"""
