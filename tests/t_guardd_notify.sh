#!/bin/sh
# t_guardd_notify - the real guardd binary speaking the systemd notify protocol.
#
# A python3 receiver plays the service manager: it binds an AF_UNIX datagram
# socket, starts guardd with NOTIFY_SOCKET pointing at it and WATCHDOG_USEC=2s
# (embedded Kafka cluster, the tiny random-weight fixture model), and checks
# that the datagrams arrive in the order systemd needs:
#   STATUS=... before READY=1; WATCHDOG=1 keep-alives while running;
#   SIGHUP -> RELOADING=1 (with MONOTONIC_USEC) then READY=1;
#   SIGTERM -> STOPPING=1, then guardd exits 0.
# Every wait is bounded; guardd is killed if the test gives up.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
[ -x "$BUILD/guardd" ] || { echo "FAIL: $BUILD/guardd not built"; exit 1; }
[ -f "$MODEL/model.safetensors" ] || { echo "skip: no tiny fixture model at $MODEL"; exit 77; }
tmp=$(mktemp -d /tmp/t_guardd_notify.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

cat >"$tmp/guardd.conf" <<EOF
kafka = {
  brokers = "embedded";
  group_id = "notify-test";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000") );
};
model = { path = "$PWD/$MODEL"; threads = 1; };
metrics = { listen = ""; };
log = { level = "info"; };
shutdown_timeout_ms = 5000;
EOF
"$BUILD/guardd" --check-config "$tmp/guardd.conf" >/dev/null 2>&1 || { echo "FAIL: test config rejected"; exit 1; }

python3 - "$BUILD/guardd" "$tmp" <<'EOF'
import os, signal, socket, subprocess, sys, time

guardd, tmp = sys.argv[1], sys.argv[2]
path = os.path.join(tmp, "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
env.pop("WATCHDOG_PID", None)
log = open(os.path.join(tmp, "guardd.log"), "w")
proc = subprocess.Popen([guardd, "--config", os.path.join(tmp, "guardd.conf")],
                        env=env, stdout=log, stderr=subprocess.STDOUT)
seen = []   # every datagram, in arrival order

def fail(msg):
    proc.kill()
    proc.wait()
    log.flush()
    print("FAIL:", msg)
    print("datagrams:", seen)
    print("guardd log (tail):")
    print("".join(open(os.path.join(tmp, "guardd.log")).readlines()[-30:]))
    sys.exit(1)

def wait_for(pred, what, timeout):
    """Receives datagrams until one satisfies pred; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timed out after %ds waiting for %s" % (timeout, what))
        if proc.poll() is not None and what != "exit":
            # drain what is already queued before declaring failure
            sock.settimeout(0.1)
        else:
            sock.settimeout(min(left, 0.5))
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            if proc.poll() is not None:
                fail("guardd exited (code %s) while waiting for %s" % (proc.returncode, what))
            continue
        seen.append(msg)
        if pred(msg):
            return msg

def has(key):
    return lambda m: any(line.startswith(key) for line in m.split("\n"))

wait_for(has("READY=1"), "READY=1", 120)
if not any(m.startswith("STATUS=") for m in seen[:-1]):
    fail("no STATUS= before READY=1")
print("ok: STATUS then READY=1;", [m for m in seen if m.startswith("STATUS=")][-1])
wait_for(has("WATCHDOG=1"), "WATCHDOG=1 keep-alive", 10)
wait_for(has("WATCHDOG=1"), "a second WATCHDOG=1 keep-alive", 10)
print("ok: WATCHDOG=1 keep-alives while running")

t_hup = time.monotonic_ns() // 1000
proc.send_signal(signal.SIGHUP)
r = wait_for(has("RELOADING=1"), "RELOADING=1 after SIGHUP", 30)
fields = dict(l.split("=", 1) for l in r.split("\n") if "=" in l)
if "MONOTONIC_USEC" not in fields:
    fail("RELOADING=1 without MONOTONIC_USEC: %r" % r)
mono = int(fields["MONOTONIC_USEC"])
if not (t_hup - 1000000 <= mono <= time.monotonic_ns() // 1000):
    fail("MONOTONIC_USEC %d is not CLOCK_MONOTONIC around the reload (sent at %d)" % (mono, t_hup))
wait_for(has("READY=1"), "READY=1 after the reload", 30)
print("ok: SIGHUP -> RELOADING=1 (MONOTONIC_USEC) -> READY=1")

proc.send_signal(signal.SIGTERM)
wait_for(has("STOPPING=1"), "STOPPING=1 after SIGTERM", 30)
try:
    rc = proc.wait(timeout=30)
except subprocess.TimeoutExpired:
    fail("guardd did not exit within 30 s of SIGTERM")
if rc != 0:
    fail("guardd exited %d after SIGTERM" % rc)
# Nothing may claim readiness after STOPPING=1.
sock.settimeout(0.2)
try:
    while True:
        seen.append(sock.recv(4096).decode())
except socket.timeout:
    pass
stop = max(i for i, m in enumerate(seen) if has("STOPPING=1")(m))
if any(has("READY=1")(m) for m in seen[stop:]):
    fail("READY=1 after STOPPING=1")
print("ok: SIGTERM -> STOPPING=1, exit 0")
print("PASS")
EOF
