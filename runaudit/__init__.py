"""The run audit page for staff (``/audit/runs/<run_id>/``, URL name ``audit:run``).

A page above ``conversations`` (it reads runs, steps and the exact context sent) and beside the
``audit`` app, which sits at the bottom of the layers (every app records into its log, so it
imports none of them). The reads are in :mod:`runaudit.selectors`, the page in :mod:`runaudit.views`.
"""
