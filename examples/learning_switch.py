"""A learning Ethernet switch in Python between virtual machines' NICs.

Each port is a ``vnetio.VhostUserNet`` (one vhost-user socket per VM). A thread per port
receives batches; the switch learns which port each source MAC lives behind, sends each
frame to the port its destination was learnt on, and floods frames to unknown,
broadcast and multicast destinations to every other port. Offload metadata travels with
the frames (``superframes`` mode): a guest's TSO super-frame reaches the other guest
whole when that guest negotiated the offload, and is split in software when not.

    python examples/learning_switch.py /tmp/vm0.sock /tmp/vm1.sock
    # then start one QEMU per socket (see examples/vhost_forward.py for the options)

It prints ``{"event": "ready"}`` when the ports listen, and its counters as one JSON
line when it stops (SIGINT or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections import defaultdict

import vnetio


class Switch:
    """The forwarding table and the counters, shared by the port threads."""

    def __init__(self, ports: list[vnetio.VhostUserNet]) -> None:
        self.ports = ports
        self.table: dict[bytes, int] = {}  # MAC -> port index (dict updates are atomic)
        self.forwarded = 0
        self.flooded = 0

    def serve(self, index: int, stop: threading.Event) -> None:
        port = self.ports[index]
        while not stop.is_set():
            batch = port.recv_batch(256, timeout=0.2)
            if not len(batch):
                continue
            out: dict[int, list[int]] = defaultdict(list)
            for i, frame in enumerate(batch):
                dst, src = bytes(frame[0:6]), bytes(frame[6:12])
                if not src[0] & 1:
                    self.table[src] = index
                where = self.table.get(dst) if not dst[0] & 1 else None
                if where is None:
                    self.flooded += 1
                    targets = [p for p in range(len(self.ports)) if p != index]
                elif where == index:
                    continue  # both ends behind the same port
                else:
                    self.forwarded += 1
                    targets = [where]
                for p in targets:
                    out[p].append(i)
            for p, indices in out.items():
                frames = [batch[i] for i in indices]
                meta = [batch.offload_info(i) for i in indices]
                self.ports[p].send_batch(vnetio.Batch.from_frames(frames, offload=meta))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sockets", nargs="+", help="one vhost-user socket per port")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ports = [vnetio.VhostUserNet(path, rx_mode="superframes") for path in args.sockets]
    try:
        switch = Switch(ports)
        threads = [threading.Thread(target=switch.serve, args=(i, stop)) for i in range(len(ports))]
        for t in threads:
            t.start()
        print(json.dumps({"event": "ready", "ports": args.sockets}), flush=True)
        stop.wait()
        for t in threads:
            t.join()
        print(
            json.dumps(
                {
                    "event": "stopped",
                    "forwarded": switch.forwarded,
                    "flooded": switch.flooded,
                    "learnt": {mac.hex(":"): port for mac, port in switch.table.items()},
                    "ports": [
                        {"stats": p.stats().as_dict(), "vhost": p.vhost_stats().as_dict()}
                        for p in ports
                    ],
                }
            ),
            flush=True,
        )
    finally:
        for p in ports:
            p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
