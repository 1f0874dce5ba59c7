"""Memory search over the dashboard's conversations: the reads (:mod:`search.selectors`), the page
(:mod:`search.views`, ``/memory/search/``, namespace ``memory``), the API router (:mod:`search.api`,
``/api/v1/memory/search``), and the database-backed memory store (:mod:`search.memory_store`).

It sits above ``conversations`` (it reads its messages and runs) and below ``engine`` (the
``recall`` tool calls :func:`search.selectors.search_messages`).
"""
