"""How the engine folds the endpoint's streamed chunks (plain dicts, as the SDK parses them for
``engine.model_call.open_stream``): text, tool-call pieces, usage and the finish reason; a chunk of
another shape changes nothing, so a stream of them ends as "without a finish reason"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.model_call import Outcome, _read_chunk


class _Deltas:
    """What ``_read_chunk`` needs of a delta batcher: ``add`` and the stream's kind."""

    def __init__(self):
        self.texts: list[str] = []
        self.stream = SimpleNamespace(holds_no_connection=False)

    def add(self, text: str) -> None:
        self.texts.append(text)


def _fold(chunks: list) -> tuple[Outcome, list[str], dict, list[str]]:
    outcome, parts, calls, deltas = Outcome(), [], {}, _Deltas()
    for chunk in chunks:
        _read_chunk(chunk, outcome, parts, calls, deltas)
    return outcome, parts, calls, deltas.texts


def _choice(delta, finish=None) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_text_tool_calls_usage_and_finish_reason_are_folded():
    outcome, parts, calls, sent = _fold([
        _choice({"role": "assistant", "content": ""}),
        _choice({"content": "Hel"}),
        _choice({"content": "lo"}),
        _choice({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "look", "arguments": '{"q"'}}]}),
        _choice({"tool_calls": [{"index": 0, "function": {"arguments": ': "x"}'}}]}),
        _choice({}, finish="tool_calls"),
        {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}},
    ])
    assert parts == sent == ["Hel", "lo"]
    assert calls == {0: {"id": "call_1", "name": "look", "arguments": '{"q": "x"}'}}
    assert outcome.finish_reason == "tool_calls"
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (12, 5)
    assert outcome.first_token_at is not None


@pytest.mark.parametrize("chunk", [
    None, "data", 3, [], {"choices": {"0": {}}}, {"choices": ["x"]}, {"choices": [{"delta": "text"}]},
    {"choices": [{"delta": {"content": 7}}]}, {"choices": [{"delta": {"tool_calls": "call"}}]},
    {"choices": [{"delta": {"tool_calls": ["x", {"index": "a", "function": "f"}]}}]}, {"usage": "many"},
], ids=repr)
def test_a_chunk_of_another_shape_changes_nothing(chunk):
    outcome, parts, calls, sent = _fold([chunk])
    assert parts == sent == []
    assert not outcome.finish_reason and outcome.prompt_tokens is None and outcome.first_token_at is None
    assert all(not c["name"] and not c["arguments"] for c in calls.values())
