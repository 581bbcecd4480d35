"""The embedded broker: kombu's filesystem transport, made safe for separate producer and consumer
processes.

kombu's filesystem channel writes a message straight into the queue folder, so a consumer polling at
the wrong moment can take a half-written file; and it claims a message by moving it to the system
temp folder, which is a copy (not an atomic rename) when that lies on another filesystem. Here a
message is written under a hidden name and renamed into place, and a consumer claims it by renaming it
to a hidden name in the same folder: both are atomic, so every message is read whole, exactly once.
Fan-out (used by ``celery inspect``/``control ping``) works as in kombu. Bindings are kept per
connection, so connections to different folders in one process do not mix (kombu shares them).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(str_to_bytes(dumps(payload)))
        os.replace(tmp, os.path.join(self.data_folder_out, name))

    def _get(self, queue: str) -> dict:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            src = os.path.join(self.data_folder_in, name)
            claimed = os.path.join(self.data_folder_in, f".{name}.{os.getpid()}.claimed")
            try:
                os.rename(src, claimed)
            except FileNotFoundError:  # another consumer took it
                continue
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
            finally:
                os.unlink(claimed)
            return loads(bytes_to_str(payload))
        raise virtual.Empty()


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client: object, **kwargs: object):
        super().__init__(client, **kwargs)
        # kombu keeps the filesystem transport's bindings in one process-wide state and writes a binding
        # to the control folder only the first time the process sees it; a connection to another folder
        # (another storage root) would then route its messages nowhere. Each connection keeps its own.
        self.state = virtual.BrokerState()
