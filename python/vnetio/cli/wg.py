"""``vnetio wg``: WireGuard interfaces from wg-quick files, like ``wg-quick`` and ``wg``.

``wg up CONFIG`` brings up a :class:`vnetio.wireguard.Interface` on a TUN named after the file
(``wg0.conf`` → ``wg0``, as wg-quick does) and returns once it is up; a background
``vnetio wg up --foreground`` process holds it (the tunnel lives in that process), serving
WireGuard's userspace API socket, so ``wg show``/``wg showconf``/``wg set``/``wg setconf`` of
wireguard-tools work on it.
``wg down NAME`` ends that process; ``wg show [NAME]`` prints any userspace interface's state
(vnetio's or wireguard-go's); ``wg genkey``/``wg pubkey`` are interchangeable with wg's.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vnetio.cli.running import hold, until_signal

__all__ = ["COMMANDS", "add_parsers", "cmd_wg"]

#: How long ``wg up`` waits for the background process to bring the interface up.
UP_TIMEOUT = 20.0


def add_parsers(sub: Any) -> None:
    wg = sub.add_parser(
        "wg",
        help="WireGuard interfaces (wg up CONFIG, wg down NAME, wg show, wg genkey/pubkey)",
        description="WireGuard interfaces on vnetio TUN adapters, from wg-quick files.",
    )
    actions = wg.add_subparsers(dest="wg_command", metavar="ACTION", required=True)
    up = actions.add_parser(
        "up",
        help="bring up the interface a wg-quick file describes (root)",
        description=(
            "Create a TUN named after CONFIG (wg0.conf → wg0) with its Address lines, a route "
            "for every peer's AllowedIPs, and the tunnel. Returns once it is up; a background "
            "process holds it until `vnetio wg down NAME`."
        ),
    )
    up.add_argument("config", metavar="CONFIG", help="a wg-quick file (wg showconf output too)")
    up.add_argument("--netns", metavar="NS", help="make the TUN and the UDP socket in NS")
    up.add_argument("--name", help="interface name (default: CONFIG's file name without .conf)")
    up.add_argument(
        "--foreground",
        action="store_true",
        help="hold the interface in this process until Ctrl-C or SIGTERM",
    )
    down = actions.add_parser("down", help="bring an interface down (ends its process)")
    down.add_argument("name", metavar="NAME|CONFIG")
    show = actions.add_parser(
        "show", help="print the state of userspace WireGuard interfaces (vnetio's, wireguard-go's)"
    )
    show.add_argument("name", nargs="?", metavar="NAME")
    actions.add_parser("genkey", help="print a new private key (like `wg genkey`)")
    actions.add_parser("pubkey", help="read a private key on stdin, print its public key")


def _name_of(config: str, name: str | None) -> str:
    if name:
        return name
    stem = Path(config).name
    return stem.removesuffix(".conf")


def _up_foreground(args: argparse.Namespace, name: str) -> int:
    import warnings

    from vnetio import wireguard

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            iface = wireguard.Interface.from_config(
                args.config, tun=name, netns=args.netns, uapi=True
            )
        except (OSError, ValueError) as exc:
            print(f"vnetio wg up: {exc}", file=sys.stderr)
            return 1
    for warning in seen:
        print(f"vnetio wg up: {warning.message}", file=sys.stderr)
    with iface:
        print(
            f"{name}: up (public key {iface.public_key}, UDP port {iface.listen_port}"
            f"{', netns ' + args.netns if args.netns else ''})",
            flush=True,
        )
        with until_signal() as done:
            hold(done, None)
    return 0


def _recorded_pid(name: str) -> int | None:
    from vnetio.wireguard import uapi

    return next((r.pid for r in uapi.records() if r.name == name), None)


def _up(args: argparse.Namespace) -> int:
    from vnetio.wireguard import uapi

    name = _name_of(args.config, args.name)
    if args.foreground:
        return _up_foreground(args, name)
    argv = [sys.executable, "-m", "vnetio.cli", "wg", "up", "--foreground", "--name", name]
    argv += ["--netns", args.netns] if args.netns else []
    argv.append(str(Path(args.config).resolve()) if Path(args.config).exists() else args.config)
    log = uapi.RUN_DIR / f"{name}.vnetio.log"
    uapi.RUN_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(log, "w") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + UP_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            sys.stderr.write(log.read_text())
            log.unlink(missing_ok=True)
            return child.returncode or 1
        # Up once it said so: its record and socket appear a moment before the line.
        if _recorded_pid(name) == child.pid and f"{name}: up" in log.read_text():
            sys.stdout.write(log.read_text())
            return 0
        time.sleep(0.05)
    child.terminate()
    print(
        f"vnetio wg up: {name} did not come up within {UP_TIMEOUT:.0f} s; see {log}",
        file=sys.stderr,
    )
    return 1


def _down(args: argparse.Namespace) -> int:
    from vnetio.wireguard import uapi

    name = _name_of(args.name, None)
    pid = _recorded_pid(name)
    if pid is None:
        print(
            f"vnetio wg down: no vnetio WireGuard interface named {name!r} is up; "
            "`vnetio wg show` lists those that are",
            file=sys.stderr,
        )
        return 1
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    if not cmdline:
        uapi.forget(name)
        print(
            f"vnetio wg down: {name}'s process ({pid}) is gone (stale record removed)",
            file=sys.stderr,
        )
        return 1
    if not any(b"vnetio" in part for part in cmdline) or b"up" not in cmdline:
        print(
            f"vnetio wg down: {name} is held by process {pid}, which is not a `vnetio wg up`: "
            "close the interface in that program",
            file=sys.stderr,
        )
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _recorded_pid(name) == pid:
        time.sleep(0.05)
    if _recorded_pid(name) == pid:
        print(f"vnetio wg down: {name}'s process ({pid}) did not stop within 10 s", file=sys.stderr)
        return 1
    uapi.forget(name)  # the log
    print(f"{name}: down")
    return 0


def _ago(when: float | None) -> str:
    if not when:
        return "never"
    seconds = max(0, int(time.time() - when))
    parts = [(seconds // 3600, "hour"), (seconds // 60 % 60, "minute"), (seconds % 60, "second")]
    text = ", ".join(f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n)
    return f"{text or '0 seconds'} ago"


def _show(args: argparse.Namespace) -> int:
    from vnetio.wireguard import uapi

    names = [args.name] if args.name else uapi.served()
    for index, name in enumerate(names):
        try:
            state = uapi.query(name)
        except OSError as exc:
            print(f"vnetio wg show: {name}: {exc}", file=sys.stderr)
            return 1
        if index:
            print()
        print(f"interface: {name}")
        print(f"  public key: {state.public_key}")
        print(f"  listening port: {state.listen_port}")
        for peer in state.peers:
            print(f"\npeer: {peer.public_key}")
            if peer.preshared_key:
                print("  preshared key: (hidden)")
            if peer.endpoint:
                print(f"  endpoint: {peer.endpoint}")
            print(f"  allowed ips: {', '.join(peer.allowed_ips) or '(none)'}")
            print(f"  latest handshake: {_ago(peer.latest_handshake)}")
            print(f"  transfer: {peer.rx_bytes} B received, {peer.tx_bytes} B sent")
            if peer.persistent_keepalive:
                print(f"  persistent keepalive: every {peer.persistent_keepalive} seconds")
    return 0


def cmd_wg(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from vnetio import wireguard

    if args.wg_command == "genkey":
        print(wireguard.genkey())
        return 0
    if args.wg_command == "pubkey":
        try:
            print(wireguard.pubkey(sys.stdin.read()))
        except ValueError as exc:
            print(f"vnetio wg pubkey: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.wg_command == "up":
        return _up(args)
    if args.wg_command == "down":
        return _down(args)
    return _show(args)


COMMANDS = {"wg": cmd_wg}
