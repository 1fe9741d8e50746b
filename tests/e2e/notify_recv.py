#!/usr/bin/env python3
"""notify_recv.py - plays systemd's side of the notify protocol for script tests.

  notify_recv.py SOCKET OUT [MAX_SECONDS]

Binds an AF_UNIX datagram socket at SOCKET (start guardd with NOTIFY_SOCKET
set to it) and appends one line per datagram received to OUT, flushed at once
so a shell test can poll the file:

  <CLOCK_MONOTONIC seconds, 3 decimals> <datagram, newlines shown as |>

e.g. "1234.567 WATCHDOG=1". The time is taken on arrival, on the clock that
`python3 -c 'import time; print(time.monotonic())'` reads, so a test can
compare the arrivals with moments of its own. The socket exists before OUT
does: a test waits for OUT, then starts guardd. Exits by itself after
MAX_SECONDS (default 600) so a test that dies cannot leave it behind.
tests/e2e/lib.sh's start_notify_recv starts it that way (t_stall.sh,
t_guardd_notify.sh).
"""
import os
import socket
import sys
import time


def main():
    path, out = sys.argv[1], sys.argv[2]
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 600.0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    deadline = time.monotonic() + limit
    with open(out, "a", buffering=1) as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(min(left, 1.0))
            try:
                msg = sock.recv(4096)
            except socket.timeout:
                continue
            text = msg.decode(errors="replace").replace("\n", "|")
            f.write("%.3f %s\n" % (time.monotonic(), text))
    sock.close()
    os.unlink(path)


if __name__ == "__main__":
    main()
