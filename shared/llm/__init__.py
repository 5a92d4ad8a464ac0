"""Chat models: choose one from the settings. SDK-backed adapters load only when chosen."""

from __future__ import annotations

from shared.config import Settings
from shared.llm.base import ChatModel, ModelMessage, Usage

__all__ = ["ChatModel", "ModelMessage", "Usage", "make_model"]


def make_model(settings: Settings) -> ChatModel:
    provider = settings.resolved_llm_provider
    if provider == "echo":
        from shared.llm.echo import EchoModel

        return EchoModel()
    from shared.llm.openai_chat import make_openai_model  # heavy: only when configured

    model: ChatModel = make_openai_model(settings)
    return model
