"""The embedded broker writes whole messages only (core.broker): a reader that lists and reads the
queue folder while 2,000 messages are published never sees a partial file. kombu's own filesystem
transport creates the file before writing it, which killed the embedded worker with a
JSONDecodeError once it polled every 20 ms."""

from __future__ import annotations

import json
import os
import threading

from kombu import Connection

from core.broker import Transport


def test_a_reader_never_sees_a_partial_message(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    partial: list[str] = []
    seen: set[str] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            for name in os.listdir(folder):
                if not name.endswith(".race.msg") or name in seen:
                    continue
                try:
                    text = (folder / name).read_text()
                except FileNotFoundError:
                    continue
                try:
                    json.loads(text)
                    seen.add(name)
                except ValueError:
                    partial.append(name)

    reader = threading.Thread(target=read)
    reader.start()
    with Connection(transport=Transport, transport_options=options) as conn:
        channel = conn.channel()
        for i in range(2000):
            channel._put("race", {"body": "x" * 2000, "i": i})
    done.set()
    reader.join()
    assert partial == []
    assert len([n for n in os.listdir(folder) if n.endswith(".race.msg")]) == 2000
    assert not [n for n in os.listdir(folder) if n.endswith(".part")], "no temporary file is left behind"
