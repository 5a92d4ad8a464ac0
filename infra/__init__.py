"""Parley's Pulumi program (``Pulumi.yaml`` at the repository root names this folder as main).

One module per concern: ``stack_config`` (the ``pulumi config`` keys, validated into a
``StackConfig`` composed of one small frozen record per concern), ``identity`` (the user-assigned
identity and role assignments), ``data`` (Cosmos DB), ``ai`` (Azure OpenAI), ``realtime`` (Web
PubSub), ``monitoring`` (Log Analytics, Application Insights, alerts), ``workbook`` and ``app``
(storage, plan, Function App, Easy Auth). ``__main__`` composes them.

Every ``create_*`` has one argument shape: ``(prefix, cfg, *, resource_group_name, deps...,
tags)``. ``prefix`` starts each logical name; ``cfg`` is the ``StackConfig`` or the one record of
it the function reads, and is left out when it reads none; dependencies are keyword-only, and
``tags`` is last (left out for resources Azure does not tag). Logical names never change: a new
name or parent is a new URN, which would replace the resource in a deployed stack.
"""
