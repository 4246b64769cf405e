"""Where Hato's time goes under load: py-spy samples of ``hato serve`` while a workload runs.

Starts Hato as the benchmark does (``servers.Hato``), drives it with ``loadgen.py`` or
``smtp-source``, and records the server with ``py-spy record`` (all threads, native frames
off, idle samples dropped) for the length of the load. Prints the functions with the most
samples of their own and the Hato modules with the most samples including callees, and
keeps the collapsed stacks for a flame graph (``--output``).

    .venv/bin/python bench/profile.py                       # pipelining, 10 sessions, 1 KB
    .venv/bin/python bench/profile.py --workload src-1-new --messages 1000
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import WORKLOADS, drive
from servers import Hato

LINE_NUMBER = re.compile(r":\d+\)$")


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = [LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        paths = {frame.rpartition(" (")[2].rstrip(")") for frame in frames if " (" in frame}
        for path in paths:
            if "/hato/" in path or path.startswith("hato/"):
                inclusive["hato/" + path.rpartition("hato/")[2]] += samples
    lines = [f"{total} samples (all threads, idle excluded)", "", "own samples:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "Hato modules, samples including callees:"]
    lines += [f"  {100 * n / total:5.1f}%  {module}" for module, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", default="pipe-10-keep", help="a name from run.py")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", type=Path, help="keep the collapsed stacks here")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    workload = next(w for w in WORKLOADS if w.name == args.workload)
    with tempfile.TemporaryDirectory(prefix="hato-profile-") as tmp:
        hato = Hato(Path(tmp))
        hato.start()
        collapsed = args.output or Path(tmp) / "stacks.txt"
        try:
            command = [pyspy, "record", "--pid", str(hato.pid), "--format", "raw"]
            command += ["--threads", "--rate", "200", "--output", str(collapsed), "--nonblocking"]
            recorder = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # py-spy attaches
            sent = drive(hato, workload, args.messages, "profile")
            rate = args.messages / (sent["end"] - sent["start"])
            time.sleep(1.0)  # the deliveries behind the last 250
            recorder.send_signal(2)  # SIGINT: py-spy writes what it has
            recorder.wait(30)
        finally:
            hato.stop()
        print(f"{workload.describe()}: {args.messages} messages, {rate:.0f}/s accepted\n")
        print(summarize(collapsed, args.top))


if __name__ == "__main__":
    main()
