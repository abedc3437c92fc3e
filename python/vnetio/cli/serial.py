"""``vnetio serial pair`` and ``vnetio slip attach``: virtual serial ports and IP over them.

``serial pair`` makes a :class:`vnetio.SerialPair` (a virtual null-modem cable), prints its
two device paths, one a line, and holds it until Ctrl-C or SIGTERM (or ``--for`` seconds),
then prints the counters of each direction to stderr.

``slip attach`` is ``slattach`` for a vnetio ``Tun``: it opens (or creates) the Tun, gives
it an address and a route to the peer if asked, and bridges it to the serial DEVICE with a
:class:`vnetio.SlipLink` until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from typing import Any

from vnetio.cli.running import hold as _hold
from vnetio.cli.running import until_signal as _until_signal

__all__ = ["COMMANDS", "add_parsers", "cmd_serial", "cmd_slip"]


def add_parsers(sub: Any) -> None:
    """Add ``serial`` and ``slip`` to the subcommands."""
    serial = sub.add_parser(
        "serial",
        help="virtual serial ports (serial pair: a null-modem pair of ttys)",
        description="Virtual serial ports.",
    )
    serial_sub = serial.add_subparsers(dest="serial_command", metavar="ACTION", required=True)
    pair = serial_sub.add_parser(
        "pair",
        help="make a virtual null-modem pair of ttys and hold it until Ctrl-C",
        description=(
            "Make two pseudo-terminals joined like a null-modem cable (what one end writes, "
            "the other reads), print their paths, and hold them until Ctrl-C or SIGTERM. "
            "Any serial program (pyserial, minicom, QEMU -serial) can open them."
        ),
    )
    pair.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="two symlink names for the ends (default: ttyVN0 ttyVN1)",
    )
    pair.add_argument(
        "--link-dir", default="/tmp", metavar="DIR", help="where the symlinks go (/tmp)"
    )
    pair.add_argument(
        "--no-links", action="store_true", help="no symlinks: print the /dev/pts paths"
    )
    pair.add_argument("--baud", type=int, metavar="BPS", help="pace each direction at BPS bit/s")
    for fault, what in (
        ("drop", "drop bytes"),
        ("corrupt", "corrupt bytes"),
        ("delay", "stall the line before bytes"),
    ):
        pair.add_argument(
            f"--{fault}", type=float, default=0.0, metavar="RATE", help=f"{what} at RATE per byte"
        )
    pair.add_argument(
        "--delay-ms", type=float, default=10.0, metavar="MS", help="length of a stall (10)"
    )
    pair.add_argument("--seed", type=int, default=0, help="seed of the fault generator (0)")
    pair.add_argument(
        "--for", dest="seconds", type=float, metavar="SECONDS", help="hold for SECONDS, then exit"
    )

    slip = sub.add_parser(
        "slip",
        help="IP over a serial line (slip attach: like slattach, to a vnetio Tun)",
        description="IP over a serial line (RFC 1055 SLIP).",
    )
    slip_sub = slip.add_subparsers(dest="slip_command", metavar="ACTION", required=True)
    attach = slip_sub.add_parser(
        "attach",
        help="bridge a serial device and a Tun with SLIP until Ctrl-C",
        description=(
            "Bridge the serial DEVICE (a tty path) and the TUN adapter --tun with SLIP framing, "
            "like slattach plus the kernel's slip driver, until Ctrl-C or SIGTERM. The Tun is "
            "created if it does not exist (CAP_NET_ADMIN), with the SLIP MTU."
        ),
    )
    attach.add_argument("device", metavar="DEVICE", help="the serial device, e.g. /tmp/ttyVN0")
    attach.add_argument("--tun", required=True, metavar="NAME", help="the TUN adapter")
    attach.add_argument("--address", metavar="CIDR", help="add this address to the Tun")
    attach.add_argument(
        "--peer", metavar="CIDR", help="route this address or prefix (the far end) via the Tun"
    )
    attach.add_argument(
        "--mtu", type=int, default=1006, help="SLIP MTU, also set on the Tun (1006, RFC 1055)"
    )
    attach.add_argument("--baud", type=int, metavar="BPS", help="line speed of a real serial port")
    attach.add_argument("--netns", metavar="NS", help="the Tun is in network namespace NS")
    attach.add_argument(
        "--for", dest="seconds", type=float, metavar="SECONDS", help="hold for SECONDS, then exit"
    )


def cmd_serial(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import vnetio

    links: tuple[str, str] | None
    if args.no_links:
        if args.names:
            parser.error("--no-links takes no NAMEs")
        links = None
    elif not args.names:
        links = ("ttyVN0", "ttyVN1")
    elif len(args.names) == 2:
        links = (args.names[0], args.names[1])
    else:
        parser.error("give two NAMEs (one per end), or none")
    faults = None
    if args.drop or args.corrupt or args.delay:
        faults = {
            "drop": args.drop,
            "corrupt": args.corrupt,
            "delay": args.delay,
            "delay_ms": args.delay_ms,
            "seed": args.seed,
        }
    try:
        pair = vnetio.SerialPair(links, link_dir=args.link_dir, baud=args.baud, faults=faults)  # type: ignore[arg-type]
    except (OSError, ValueError) as exc:
        print(f"vnetio serial pair: {exc}", file=sys.stderr)
        return 1
    with pair, _until_signal() as done:
        for path, pty in zip(pair.paths, pair.ptys, strict=True):
            print(path if path == pty else f"{path} -> {pty}", flush=True)
        _hold(done, args.seconds)
    # Read once the pair is closed: its relay thread has stopped, so the counts are final
    # (it counts a write just after making it).
    stats = pair.stats()
    for direction, s in stats.items():
        print(
            f"{direction}: {s['bytes_out']:,} bytes delivered of {s['bytes_in']:,} read, "
            f"{s['dropped']:,} dropped, {s['corrupted']:,} corrupted, {s['delays']:,} delays, "
            f"blocked {s['blocked_s']:.3f} s",
            file=sys.stderr,
        )
    return 0


def _route_peer(tun: str, peer: str, netns: str | None) -> None:
    network = ipaddress.ip_network(peer, strict=False)
    ns = ["-n", netns] if netns else []
    # Process work, as `ip` does it: vnetio's core has no route API.
    subprocess.run(
        ["ip", *ns, "route", "replace", str(network), "dev", tun],
        check=True,
        capture_output=True,
        text=True,
    )


def cmd_slip(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import vnetio

    if not 68 <= args.mtu <= 65535:
        parser.error("--mtu must be between 68 and 65535")
    try:
        tun = vnetio.Tun(args.tun, netns=args.netns, mtu=args.mtu)
    except (OSError, ValueError) as exc:
        print(f"vnetio slip attach: {exc}", file=sys.stderr)
        return 1
    with tun:
        try:
            if args.address:
                tun.add_address(args.address)
            tun.up()
            if args.peer:
                _route_peer(tun.name, args.peer, args.netns)
            link = vnetio.SlipLink(args.device, tun, mtu=args.mtu, baud=args.baud)
        except subprocess.CalledProcessError as exc:
            print(f"vnetio slip attach: ip route: {exc.stderr.strip()}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"vnetio slip attach: {exc}", file=sys.stderr)
            return 1
        with link, _until_signal() as done:
            print(
                f"{args.device} <-> {tun.name} (SLIP, MTU {args.mtu})"
                + (f", {args.address}" if args.address else "")
                + (f", peer {args.peer}" if args.peer else ""),
                flush=True,
            )
            _hold(done, args.seconds)
        # Read once the link is closed: its threads have stopped, so the counts are final
        # (each counts a batch just after handing it on).
        s = link.link_stats()
    dropped = s["bad_escape"] + s["over_mtu"] + s["noise"] + s["bad_checksum"]
    print(
        f"{s['packets_in']:,} packets from the line, {s['packets_out']:,} to it; dropped from "
        f"the line: {dropped:,} (bad escape {s['bad_escape']}, over MTU {s['over_mtu']}, noise "
        f"{s['noise']}, bad checksum {s['bad_checksum']})",
        file=sys.stderr,
    )
    return 0


COMMANDS = {"serial": cmd_serial, "slip": cmd_slip}
