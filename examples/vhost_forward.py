"""Forward frames between a virtual machine's virtio-net NIC and a TAP, in Python.

vnetio serves the VM's NIC as a vhost-user backend (``vnetio.VhostUserNet``) and opens a
TAP in a network namespace; two threads move batches each way. With ``--mode
superframes`` (the default) the guest's TSO super-frames cross whole, with their offload
metadata, and so do the host's toward a guest that negotiated the offload: one Python
call per batch of up to 256 frames, one copy per frame each way (guest memory to the
batch arena, the arena to the kernel).

With ``--rust`` no Python moves frames: a ``vnetio.Forwarder`` runs the two directions on
Rust threads (the same batches and copies, without the interpreter between them); this
script only starts it and reports its counters.

    python examples/vhost_forward.py /tmp/vm0.sock vnfwd0 --netns lab \
        --address 192.0.2.1/24
    qemu-system-x86_64 ... \
        -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
        -chardev socket,id=c0,path=/tmp/vm0.sock \
        -netdev vhost-user,id=n0,chardev=c0 \
        -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56

It prints one JSON line when both ends are open (``{"event": "ready", ...}``) and one
with the counters when it stops (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

import vnetio


def pump(
    src: vnetio.Adapter, dst: vnetio.Adapter, stop: threading.Event, tally: dict[str, int]
) -> None:
    """Move batches from ``src`` to ``dst`` until ``stop`` is set."""
    count_meta = "superframes" in tally
    while not stop.is_set():
        batch = src.recv_batch(256, timeout=0.2)
        if not len(batch):
            continue
        tally["frames"] += len(batch)
        if count_meta:  # per-frame Python work: only when asked for (tests)
            tally["superframes"] += sum(
                1 for i in range(len(batch)) if (o := batch.offload_info(i)) and o.gso_size
            )
        try:
            dst.send_batch(batch)
        except OSError as exc:  # e.g. the TAP's link is down: count, keep forwarding
            tally["send_errors"] += 1
            print(json.dumps({"event": "send_error", "error": str(exc)}), flush=True)


def forward_in_python(
    vm: vnetio.VhostUserNet, tap: vnetio.Tap, args: argparse.Namespace, stop: threading.Event
) -> tuple[dict[str, int], dict[str, int]]:
    """Two Python threads, one per direction, until ``stop`` is set."""
    keys = ["frames", "send_errors"] + (["superframes"] if args.count_superframes else [])
    to_tap = dict.fromkeys(keys, 0)
    to_vm = dict.fromkeys(keys, 0)
    threads = [
        threading.Thread(target=pump, args=(vm, tap, stop, to_tap)),
        threading.Thread(target=pump, args=(tap, vm, stop, to_vm)),
    ]
    for t in threads:
        t.start()
    print(json.dumps({"event": "ready", "socket": args.socket, "tap": tap.name}), flush=True)
    stop.wait()
    for t in threads:
        t.join()
    return to_tap, to_vm


def forward_in_rust(
    vm: vnetio.VhostUserNet, tap: vnetio.Tap, socket: str, stop: threading.Event
) -> tuple[dict[str, int], dict[str, int]]:
    """A ``vnetio.Forwarder`` until ``stop`` is set or it stops (an adapter closed)."""
    with vnetio.Forwarder(vm, tap) as fwd:
        print(json.dumps({"event": "ready", "socket": socket, "tap": tap.name}), flush=True)
        while not stop.is_set() and not fwd.wait(0.2):
            pass
        if not fwd.running:
            print(json.dumps({"event": "forwarder_stopped", "reason": fwd.reason}), flush=True)
    stats = fwd.stats()
    return stats["a_to_b"], stats["b_to_a"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("socket", help="the vhost-user socket QEMU connects to")
    parser.add_argument("tap", help="name of the TAP to create (or attach to)")
    parser.add_argument("--netns", help="network namespace of the TAP")
    parser.add_argument("--address", action="append", default=[], help="CIDR for the TAP")
    parser.add_argument("--mode", choices=["superframes", "segments"], default="superframes")
    parser.add_argument("--mac", help="MAC in the device's config space")
    parser.add_argument("--count-superframes", action="store_true")
    parser.add_argument(
        "--rust", action="store_true", help="forward with vnetio.Forwarder (Rust threads)"
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with (
        vnetio.VhostUserNet(args.socket, mac=args.mac, rx_mode=args.mode) as vm,
        vnetio.Tap(args.tap, netns=args.netns, offload=True, rx_mode=args.mode) as tap,
    ):
        for cidr in args.address:
            tap.add_address(cidr)
        tap.up()
        if args.rust:
            to_tap, to_vm = forward_in_rust(vm, tap, args.socket, stop)
        else:
            to_tap, to_vm = forward_in_python(vm, tap, args, stop)
        report: dict[str, Any] = {
            "event": "stopped",
            "guest_to_tap": to_tap,
            "tap_to_guest": to_vm,
            "features": sorted(vm.features),
            "vhost": vm.vhost_stats().as_dict(),
            "vm_stats": vm.stats().as_dict(),
            "tap_stats": tap.stats().as_dict(),
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
