"""Run parameters: the OpenAI chat-completion parameters a run, an agent or a variant may set."""

ALLOWED_PARAMS = frozenset({
    "temperature", "top_p", "max_tokens", "seed", "stop", "presence_penalty", "frequency_penalty",
})


def model_params(params: dict | None) -> dict:
    """The subset of ``params`` that is sent to the model (other keys, e.g. ``system``, are Arbor's)."""
    return {k: v for k, v in (params or {}).items() if k in ALLOWED_PARAMS}
