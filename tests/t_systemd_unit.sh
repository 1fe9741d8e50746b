#!/bin/sh
# t_systemd_unit - systemd/guardd.service, the sysusers/tmpfiles snippets and
# the `make install` layout.
#
# 1. `systemd-analyze verify` on a copy of the unit whose ExecStart points at
#    the built binary (verify insists the binary exists) must print nothing; a
#    deliberately broken copy must print something (so the check can fail).
# 2. `systemd-analyze security --offline=true` must rate it <= 2.0.
# 3. `make install DESTDIR=tmp` puts every file where the unit expects it; then
#    systemd-sysusers/systemd-tmpfiles --root=tmp create the user and the
#    directories with the intended owners and modes.
# 4. Hardening smoke test, when user namespaces are available: runs the
#    tokenizer and the metrics endpoint the way the unit confines them, with
#    the kernel's memory-deny-write-execute (prctl PR_SET_MDWE, what
#    MemoryDenyWriteExecute= amounts to), no_new_privs, and a procfs mounted
#    with subset=pid,hidepid=invisible (ProcSubset=pid, ProtectProc=invisible).
#    PCRE2's JIT must be refused there and tokens must not change. Then the
#    real guardd runs confined the same way (embedded Kafka, tiny model): it
#    must become ready, classify an event, and stop cleanly on SIGTERM.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
command -v systemd-analyze >/dev/null || { echo "skip: systemd-analyze not installed"; exit 77; }
unit=systemd/guardd.service
tmp=$(mktemp -d /tmp/t_systemd_unit.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*"; exit 1; }

# --- 1. verify --------------------------------------------------------------
[ -x "$BUILD/guardd" ] || fail "$BUILD/guardd not built"
mkdir -p "$tmp/v" "$tmp/bad"
sed "s|^ExecStart=/usr/sbin/guardd |ExecStart=$PWD/$BUILD/guardd |" "$unit" >"$tmp/v/guardd.service"
grep -q "^ExecStart=$PWD/$BUILD/guardd --config /etc/guardd/guardd.conf\$" "$tmp/v/guardd.service" \
    || fail "ExecStart is not '/usr/sbin/guardd --config /etc/guardd/guardd.conf'"
# verify exits 0 even on unknown keys, so any output at all is a failure.
out=$(systemd-analyze verify "$tmp/v/guardd.service" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify complained:
$out"
echo "ok: systemd-analyze verify is silent"
sed 's/^ProtectSystem=/ProtectSytem=/' "$tmp/v/guardd.service" >"$tmp/bad/guardd.service"
out=$(systemd-analyze verify "$tmp/bad/guardd.service" 2>&1 || true)
echo "$out" | grep -q ProtectSytem || fail "verify did not notice a misspelt key (test is blind)"

# The lifecycle settings guardd's notify code relies on.
for want in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=120' 'Restart=on-failure' \
            'ExecReload=/bin/kill -HUP $MAINPID' 'MemoryDenyWriteExecute=yes' \
            'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'CapabilityBoundingSet=' \
            'ProtectSystem=strict' 'UMask=0077' 'User=guardd'; do
    grep -qxF "$want" "$unit" || fail "$unit lacks '$want'"
done
# The stop: guardd exits within shutdown_timeout_ms plus about a second (a
# batch running then is abandoned at a layer boundary); systemd must not
# kill it first.
stop_s=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "$unit")
shut_ms=$(sed -n 's/^shutdown_timeout_ms = \([0-9]*\);.*/\1/p' etc/guardd.conf)
[ -n "$stop_s" ] && [ -n "$shut_ms" ] || fail "no TimeoutStopSec in $unit or shutdown_timeout_ms in etc/guardd.conf"
[ $((stop_s * 1000)) -ge $((shut_ms + 5000)) ] \
    || fail "TimeoutStopSec=$stop_s leaves no margin over shutdown_timeout_ms = $shut_ms"

# --- 2. security score ------------------------------------------------------
sec=$(systemd-analyze security --offline=true --no-pager "$tmp/v/guardd.service" 2>&1) || true
score=$(echo "$sec" | sed -n 's/.*Overall exposure level for guardd.service: \([0-9.]*\).*/\1/p')
[ -n "$score" ] || fail "no exposure level in:
$sec"
echo "systemd-analyze security: overall exposure level $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $score > 2.0:
$(echo "$sec" | grep '✗')"

# --- 3. make install layout -------------------------------------------------
root="$tmp/root"
make -s install DESTDIR="$root" BUILD="$BUILD" SANITIZE="${SANITIZE:-0}" >"$tmp/install.log" 2>&1 \
    || fail "make install DESTDIR failed: $(tail -n 5 "$tmp/install.log")"
for f in usr/sbin/guardd usr/bin/guardctl; do
    [ -x "$root/$f" ] || fail "$f not installed executable"
done
for f in etc/guardd/guardd.conf usr/lib/systemd/system/guardd.service \
         usr/lib/sysusers.d/guardd.conf usr/lib/tmpfiles.d/guardd.conf; do
    [ -f "$root/$f" ] || fail "$f not installed"
done
ls "$root"/usr/share/guardd/schemas/*.json >/dev/null 2>&1 || fail "no schemas installed"
cmp -s "$unit" "$root/usr/lib/systemd/system/guardd.service" || fail "installed unit differs"
echo "ok: make install DESTDIR layout"

if command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null; then
    systemd-sysusers --root="$root" >/dev/null 2>&1 || fail "systemd-sysusers --root"
    gid=$(awk -F: '$1 == "guardd" { print $3 }' "$root/etc/group")
    uid=$(awk -F: '$1 == "guardd" { print $3 }' "$root/etc/passwd")
    [ -n "$gid" ] && [ -n "$uid" ] || fail "sysusers did not create guardd"
    [ "$(awk -F: '$1 == "guardd" { print $7 }' "$root/etc/passwd")" = /usr/sbin/nologin ] || fail "guardd has a login shell"
    systemd-tmpfiles --root="$root" --create >"$tmp/tmpfiles.log" 2>&1 \
        || fail "systemd-tmpfiles --create: $(cat "$tmp/tmpfiles.log")"
    check_mode() { # PATH MODE UID GID
        got=$(stat -c '%a %u %g' "$root/$1")
        [ "$got" = "$2 $3 $4" ] || fail "$1: mode/owner '$got', want '$2 $3 $4'"
    }
    check_mode var/lib/guardd 750 0 "$gid"
    check_mode etc/guardd 750 0 "$gid"
    check_mode etc/guardd/guardd.conf 640 0 "$gid"
    echo "ok: sysusers (uid $uid) and tmpfiles (modes, owners)"
fi

# --- 4. hardening smoke test ------------------------------------------------
# confined CMD... : runs CMD in new user/mount/pid namespaces with a procfs
# like ProcSubset=pid + ProtectProc=invisible, no_new_privs and MDWE.
confined() {
    unshare -Urmpf --mount-proc sh -c '
        mount -t proc -o subset=pid,hidepid=invisible proc /proc || exit 90
        exec python3 -c "
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 66, 1
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0: sys.exit(91)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0: sys.exit(92)
if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) != PR_MDWE_REFUSE_EXEC_GAIN: sys.exit(93)
os.execv(sys.argv[1], sys.argv[1:])" "$@"' sh "$@"
}
if ! confined /bin/true 2>/dev/null; then
    echo "note: hardening smoke test skipped (no user namespaces or PR_SET_MDWE here)"
    echo PASS; exit 0
fi
[ ! -e /proc/stat ] || confined /bin/sh -c '[ ! -e /proc/stat ]' || fail "subset=pid procfs still shows /proc/stat"

tok=${GUARDD_TOKENIZER:-${DEPS_DIR:-.deps}/tokenizer.json}
if [ -f "$tok" ]; then
    text='Hello, wörld! How do I bake 12 loaves of bread?   Tabs	and 東京 😀'
    plain=$(printf '%s' "$text" | "$BUILD/guardctl" tokenize --tokenizer "$tok") || fail "guardctl tokenize"
    hard=$(printf '%s' "$text" | confined "$PWD/$BUILD/guardctl" tokenize --tokenizer "$tok") \
        || fail "guardctl tokenize fails under MemoryDenyWriteExecute"
    [ -n "$plain" ] && [ "$plain" = "$hard" ] || fail "tokens differ under MDWE: '$plain' vs '$hard'"
    if command -v strace >/dev/null; then
        # Prove the interpreter fallback really ran: the JIT's W+X mmap was refused.
        printf 'x' | confined /usr/bin/strace -f -e trace=mmap "$PWD/$BUILD/guardctl" tokenize \
            --tokenizer "$tok" 2>"$tmp/strace.log" >/dev/null || true
        grep -q 'PROT_READ|PROT_WRITE|PROT_EXEC.*= -1 EACCES' "$tmp/strace.log" \
            || echo "note: no refused W+X mapping seen (PCRE2 built without JIT?)"
    fi
    echo "ok: tokenizer gives the same tokens with PCRE2 JIT refused (MDWE)"
fi

# The metrics endpoint and its process_* metrics with only /proc/self visible.
mkfifo "$tmp/in"
confined "$PWD/$BUILD/tests/check_metrics" --serve <"$tmp/in" >"$tmp/serve.out" 2>&1 &
pids="$pids $!"
exec 3>"$tmp/in"
n=50; while [ $n -gt 0 ] && ! grep -q '^port ' "$tmp/serve.out"; do sleep 0.2; n=$((n-1)); done
port=$(sed -n 's/^port //p' "$tmp/serve.out")
[ -n "$port" ] || fail "metrics server did not start confined: $(cat "$tmp/serve.out")"
curl -fsS "http://127.0.0.1:$port/metrics" >"$tmp/scrape.txt" || fail "scrape of confined server"
for m in process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes \
         process_open_fds process_max_fds process_start_time_seconds; do
    grep -q "^$m [0-9]" "$tmp/scrape.txt" || fail "$m missing under ProcSubset=pid"
done
exec 3>&-
echo "ok: /metrics with process_* under ProcSubset=pid, ProtectProc=invisible, MDWE"

MODEL=${GUARDD_TINY_MODEL:-$BUILD/fixtures/tiny}
if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "note: no tiny model at $MODEL: confined guardd run skipped"
    echo PASS; exit 0
fi
cat >"$tmp/guardd.conf" <<EOF
kafka = {
  brokers = "embedded";
  group_id = "confined";
  input_topics = [ "conversations" ];
  properties = ( ("session.timeout.ms", "6000") );
};
model = { path = "$PWD/$MODEL"; threads = 1; };
metrics = { listen = "127.0.0.1:0"; };
EOF
confined "$PWD/$BUILD/guardd" --config "$tmp/guardd.conf" >"$tmp/guardd.log" 2>&1 &
upid=$!
pids="$pids $upid"
glog() { sed -n "s/.*event=$1 [^=]*=\([^ ]*\).*/\1/p" "$tmp/guardd.log" 2>/dev/null | head -n 1; }
n=100; while [ $n -gt 0 ] && { [ -z "$(glog metrics_listening)" ] || [ -z "$(glog embedded_broker)" ]; }; do
    sleep 0.2; n=$((n-1)); done
gport=$(glog metrics_listening); bs=$(glog embedded_broker)
[ -n "$gport" ] && [ -n "$bs" ] || { tail -n 20 "$tmp/guardd.log"; fail "confined guardd did not start"; }
n=150; until curl -fsS "http://127.0.0.1:$gport/readyz" >/dev/null 2>&1; do
    n=$((n-1)); [ $n -gt 0 ] || { tail -n 20 "$tmp/guardd.log"; fail "confined guardd never ready"; }
    sleep 0.2; done
"$BUILD/guardctl" send --brokers "$bs" --topic conversations "Is this confined?" >/dev/null 2>"$tmp/send.log" \
    || fail "guardctl send to the confined guardd: $(cat "$tmp/send.log")"
verdicts() { curl -fsS "http://127.0.0.1:$gport/metrics" | awk '/^guardd_verdicts_total/ { v += $2 } END { print v + 0 }'; }
n=150; until [ "$(verdicts)" = 1 ]; do
    n=$((n-1)); [ $n -gt 0 ] || { tail -n 20 "$tmp/guardd.log"; fail "confined guardd produced no verdict"; }
    sleep 0.2; done
# The background job is a subshell running unshare, whose child is guardd
# (sh and python exec'd into it): find it by walking down the tree.
gpid=""; p=$upid
for _ in 1 2 3 4; do
    p=$(ps -o pid= --ppid "$p" | head -n 1 | tr -d ' ')
    [ -n "$p" ] || break
    if [ "$(ps -o comm= -p "$p")" = guardd ]; then gpid=$p; break; fi
done
[ -n "$gpid" ] || fail "cannot find the confined guardd's pid"
kill -TERM "$gpid"
n=150; while kill -0 "$gpid" 2>/dev/null; do
    n=$((n-1)); [ $n -gt 0 ] || { kill -KILL "$gpid"; fail "confined guardd ignored SIGTERM for 30 s"; }
    sleep 0.2; done
rc=0; wait "$upid" || rc=$?
[ $rc -eq 0 ] || { tail -n 20 "$tmp/guardd.log"; fail "confined guardd exited $rc after SIGTERM"; }
grep -q 'event=exit code=0' "$tmp/guardd.log" || fail "no clean exit in the confined guardd's log"
echo "ok: guardd confined (MDWE, no_new_privs, ProcSubset=pid): ready, 1 verdict, clean SIGTERM exit"
echo PASS
