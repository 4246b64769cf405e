"""Commit messages until killed; print "<queue ID> <sha256> <size>" once each commit returned.

Run by test_crash.py, which kills it with SIGKILL: every line printed is a 250 the server would
have sent, so every one must survive.
Usage: python crash_writer.py DATA_DIR SYNC SESSIONS
"""

import asyncio
import hashlib
import os
import random
import sys
from pathlib import Path

from hato.spool import Envelope, Recipient, Spool


async def session(spool: Spool, number: int) -> None:
    rng = random.Random(number)
    env = Envelope(
        reverse_path=f"sender{number}@example.org",
        recipients=(Recipient(address="rcpt@example.net"),),
    )
    while True:
        writer = spool.new_message()
        digest = hashlib.sha256()
        for _ in range(rng.randint(1, 8)):
            chunk = os.urandom(rng.randint(1, 4096))
            writer.write(chunk)
            digest.update(chunk)
            await asyncio.sleep(0)  # let other sessions run mid-DATA, as a socket would
        await writer.commit(env)
        sys.stdout.write(f"{writer.queue_id} {digest.hexdigest()} {writer.size}\n")
        sys.stdout.flush()


async def main(data_dir: Path, sync: str, sessions: int) -> None:
    with Spool(data_dir, sync=sync) as spool:
        spool.open()
        await asyncio.gather(*(session(spool, n) for n in range(sessions)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
