"""Run event streams: what a worker publishes while a run executes (:mod:`streams.backends`, Redis
Streams or database rows) and the Server-Sent Events that readers get (:mod:`streams.sse`).

Infrastructure below ``conversations``: the engine publishes, the conversations views and API
answer with :func:`streams.sse.sse_response`, and neither this package nor its one model
(:class:`streams.models.RunEvent`, the database backend's rows) imports an app above it. What the
SSE endpoint reads from a run itself (finished? the stored answer) is passed in by the caller
(:class:`streams.sse.RunSource`).
"""
