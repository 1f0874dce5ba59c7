"""What the fault suite prints at the end (collected by the scenarios, printed by conftest)."""

HEADERS = ["scenario", "runs", "succeeded", "failed with reason", "stuck", "duplicated", "SSE clients that got done",
           "restarted by"]
ROWS: list[list] = []
NOTES: list[str] = []  # one line per check that is not a run scenario (schemathesis)
