"""HTML pages of the conversations app, a module each: function views, HTMX partials
(``template#partial``), real hrefs everywhere.

Every view checks ownership itself (404 for other users' sessions and runs), never only in a
template: lookups go through :mod:`conversations.selectors`, whose NotFound the site's
``core.middleware.NotFoundMiddleware`` answers with the 404 page. Ids in paths are ``<uuid:…>``
(a malformed id is a 404 before any view runs). Reads go through :mod:`conversations.selectors`
(constant query counts at any depth); writes through :mod:`conversations.services`.

Pages: the sessions list (search, rename, delete with undo; :mod:`.sessions`), the chat (the
active branch, newest turns first, older ones loaded on scroll; the sessions sidebar beside it;
:mod:`.chat`), the tree view (lazy subtrees; :mod:`.tree`). Actions on a turn (:mod:`.runs`):
edit, regenerate/retry, continue from here (rewind), fork, open a sibling (``< 2/3 >``), stop.
What they share (the sidebar, the htmx answers) is :mod:`.common`.

After an htmx action the response says where focus goes and what to announce: the
``arbor:after`` event of ``HX-Trigger-After-Settle`` (``HX-Trigger`` when nothing is swapped),
``{"focus": <CSS selector>, "say": <text for the aria-live region>}``, handled by app.js.
"""
