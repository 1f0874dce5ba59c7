"""The OpenAI chat message format, shared by every kind of stored message."""

from __future__ import annotations


def openai_message(message) -> dict:
    """``{"role", "content", "name"?, "tool_calls"?, "tool_call_id"?}`` — the OpenAI chat format of
    any object with those attributes (store messages, ``conversations.models.Message``, path rows)."""
    data: dict = {"role": message.role, "content": message.content}
    if message.name:
        data["name"] = message.name
    if message.tool_calls:
        data["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        data["tool_call_id"] = message.tool_call_id
    return data
