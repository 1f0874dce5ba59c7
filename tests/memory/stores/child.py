"""A writer process for the multi-process tests: ``python -m tests.memory.stores.child SPEC WRITER COUNT``.

Opens the store that SPEC (JSON from ``StoreSpec.child``) describes and adds COUNT user messages
with metadata ``{"writer": WRITER, "n": i}``, in order.
"""

from __future__ import annotations

import json
import os
import sys


def main(spec_json: str, writer: int, count: int) -> None:
    spec = json.loads(spec_json)
    if spec["backend"] == "database":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
        import django

        django.setup()
    from tests.memory.stores.conftest import StoreSpec

    store = StoreSpec(spec["backend"], spec["options"]).open()
    for i in range(count):
        store.add_message(
            {"role": "user", "content": f"writer {writer} message {i}", "metadata": {"writer": writer, "n": i}},
        )
    print(f"writer {writer}: wrote {count}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
