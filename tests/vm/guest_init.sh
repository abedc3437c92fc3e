#!/bin/sh
# /init of the test guest (busybox ash, PID 1). Built into the initramfs by tests/vm/rig.py.
#
# 1. mounts proc, sysfs, devtmpfs (no /dev/zero or /dev/ttyS1 without it), tmpfs;
# 2. insmods the modules listed in /etc/vnvm/modules, in that (dependency) order;
# 3. serves commands from the host on the second serial port, /dev/ttyS1.
#
# Command protocol, over /dev/ttyS1 (raw mode):
#   host  -> guest  RUN <id> <timeout_s> <cmd_len> <stdin_len>\n, then exactly cmd_len bytes of
#                   command and stdin_len bytes of standard input (read with dd: a shell
#                   `read` takes one byte per system call, slow under emulation)
#                   POWEROFF\n
#   guest -> host   @@VNVM <nonce> READY                 once, when the server starts
#                   @@VNVM <nonce> OUT <id>              then stdout, base64, 76-column lines
#                   @@VNVM <nonce> ERR <id>              then stderr, base64
#                   @@VNVM <nonce> END <id> <status> <timed_out 0|1>
# <nonce> comes from the kernel command line (vnvm.nonce=...), so the host never takes stale
# or forged text for a reply; base64 keeps the markers out of the payload.
# /bin/sh is the host's dash, not busybox ash: Debian's static busybox prefers its own
# applets to PATH (FEATURE_SH_STANDALONE), which would hide e.g. iproute2's `ip`.
# Each command runs as `setsid /bin/sh -c CMD` in its own session, so a timeout kills its
# whole process group. The console (ttyS0) carries only init's messages.

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run /root
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm

NONCE=
for word in $(cat /proc/cmdline); do
    case "$word" in vnvm.nonce=*) NONCE=${word#vnvm.nonce=} ;; esac
done

echo "vnvm: loading modules"
if [ -s /etc/vnvm/modules ]; then
    while read -r mod; do
        insmod "/lib/modules/vnvm/$mod.ko" || echo "vnvm: insmod $mod failed"
    done < /etc/vnvm/modules
fi
ip link set dev lo up
hostname vnvm

D=/run/vnvm
mkdir -p "$D"

# Exactly $1 bytes from the command channel. Not `head -c`: it reads ahead through stdio,
# and what it buffered beyond the count is lost on a tty.
take() {
    [ "$1" -gt 0 ] && dd bs=4096 count="$1" iflag=fullblock,count_bytes status=none <&3
}

serve() {
    # Raw mode: no echo, no CR/LF translation, no 4096-byte canonical line limit.
    stty -F /dev/ttyS1 raw -echo -ixon -ixoff
    exec 3<>/dev/ttyS1
    echo "@@VNVM $NONCE READY" >&3
    set -f
    while IFS= read -r line <&3; do
        set -- $line
        case "$1" in
        RUN)
            id=$2 limit=$3
            rm -f "$D/cmd" "$D/in" "$D/out" "$D/err" "$D/timed_out"
            take "$4" > "$D/cmd"
            take "$5" > "$D/in"
            cd /
            setsid /bin/sh -c "$(cat "$D/cmd")" <"$D/in" >"$D/out" 2>"$D/err" &
            cpid=$!
            (
                trap 'kill $s 2>/dev/null; exit 0' TERM
                sleep "$limit" & s=$!
                # dash's kill takes -PGID but not `-- -PGID`.
                wait $s && { : > "$D/timed_out"; kill -KILL -"$cpid" 2>/dev/null || kill -KILL "$cpid"; }
            ) &
            wpid=$!
            wait "$cpid"
            status=$?
            kill "$wpid" 2>/dev/null
            wait "$wpid" 2>/dev/null
            timed_out=0
            [ -e "$D/timed_out" ] && timed_out=1
            {
                echo "@@VNVM $NONCE OUT $id"
                base64 < "$D/out"
                echo "@@VNVM $NONCE ERR $id"
                base64 < "$D/err"
                echo "@@VNVM $NONCE END $id $status $timed_out"
            } >&3
            ;;
        POWEROFF)
            echo "vnvm: poweroff"
            sync
            poweroff -f
            ;;
        esac
    done
    echo "vnvm: command channel closed"
}

echo "vnvm: starting command server"
serve &
# The server is not PID 1, so it can be signalled (the rig's hang test stops it).
echo $! > "$D/server.pid"
# PID 1 stays to reap orphans; the guest ends with `poweroff -f` or by being killed.
while :; do
    wait
    sleep 1
done
