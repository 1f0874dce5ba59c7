"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's ``filesystem://`` transport creates a message file, then locks and writes it, while the
consumer moves and reads files without taking the lock: a consumer polling often (Arbor polls
every 20 ms so a run starts at once) can read a file that is still empty, and the worker dies with
"Unrecoverable error: JSONDecodeError". Here a message is written to a hidden temporary file in the
same folder and renamed into place (``os.replace`` is atomic within a filesystem), so a consumer only
ever sees whole messages. Reading, acknowledging and everything else is kombu's.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` on ``queue``: written under a name the consumer skips, then renamed."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        fd, temporary = tempfile.mkstemp(prefix=".", suffix=".part", dir=self.data_folder_out)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temporary, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise filesystem.ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
    # A folder has no host: with kombu's default ("localhost") every process that connects logs
    # "No hostname was supplied. Reverting to default 'localhost'" (a quiet console).
    default_connection_params = {"hostname": None}
