"""A guest's NICs as QEMU sees them: a TAP by name, an inherited TAP/macvtap descriptor,
or a vhost-user backend's socket."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import VmError
from .image import PREFIX

# --------------------------------------------------------------------------- NICs


def _opts(options: Mapping[str, str | int | bool]) -> str:
    def text(v: str | int | bool) -> str:
        return ("on" if v else "off") if isinstance(v, bool) else str(v)

    return "".join(f",{k}={text(v)}" for k, v in options.items())


@dataclass(frozen=True)
class TapNic:
    """QEMU's own tap netdev on a TAP opened by name: QEMU does TUNSETIFF itself.

    The TAP should exist already (e.g. ``vnetio.Tap(name, persist=True, netns=ns)``, closed
    again: a single-queue TAP takes one reader). When ``netns`` is given, QEMU runs inside
    that namespace (``ip netns exec``); all TapNics of one guest must then share it.
    ``vnet_hdr=on``: QEMU and the guest negotiate checksum and TSO offloads through it.
    ``device`` adds virtio-net-pci properties, e.g. ``{"mrg_rxbuf": False, "csum": False}``.
    """

    ifname: str
    mac: str
    netns: str | None = None
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        netdev = (
            f"tap,id=n{index},ifname={self.ifname},script=no,downscript=no,vhost=off,vnet_hdr=on"
        )
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile={_opts(self.device)}"
        return ["-netdev", netdev, "-device", dev], []


@dataclass(frozen=True)
class FdNic:
    """QEMU's tap netdev on an already open descriptor, inherited by QEMU (``pass_fds``).

    For a macvtap (``fd`` from :func:`open_macvtap`; ``mac`` must then be the macvtap
    link's own MAC, the only unicast address it passes up) or a TAP that the test keeps
    open. QEMU probes the descriptor for IFF_VNET_HDR (macvtap has it from open). The
    caller keeps ownership of ``fd`` and closes it after the guest is gone.
    """

    fd: int
    mac: str
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        netdev = f"tap,id=n{index},fd={self.fd},vhost=off"
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile={_opts(self.device)}"
        return ["-netdev", netdev, "-device", dev], [self.fd]


@dataclass(frozen=True)
class VhostUserNic:
    """A vhost-user backend (e.g. ``vnetio.VhostUserNet``) serving ``socket_path``.

    QEMU side (what this assembles)::

        -chardev socket,id=vuN,path=SOCK[,server=on,wait=off|,reconnect=S]
        -netdev vhost-user,id=nN,chardev=vuN[,queues=Q]
        -device virtio-net-pci,netdev=nN,mac=MAC,vectors=0[,mq=on]

    plus, once per guest, the guest RAM as shared memory the backend can map
    (``-object memory-backend-memfd,id=mem,size=<-m>M,share=on -numa node,memdev=mem``).

    ``server=False`` (default): the backend listens and QEMU connects at start-up (it fails
    if nobody listens); ``reconnect`` makes QEMU retry every S seconds after a disconnect.
    ``server=True``: QEMU listens on the path and the backend connects; with ``wait=off``
    the guest starts at once and its NIC links up when the backend arrives.

    ``msix=False`` (default) gives the device no MSI-X vectors (legacy INTx): QEMU 7.2
    under TCG segfaults in ``vhost_net_start`` -> ``msix_set_vector_notifiers`` when the
    guest driver starts a vhost-user device that uses MSI-X (seen here with a backend stub;
    with ``vectors=0`` the same guest boots and the device starts). Without KVM there are
    no irqfds anyway: QEMU reads the call eventfds and injects the interrupt itself.
    """

    socket_path: str
    mac: str
    server: bool = False
    reconnect: int | None = None
    queues: int = 1
    msix: bool = False
    device: Mapping[str, str | int | bool] = field(default_factory=dict)

    def qemu_args(self, index: int) -> tuple[list[str], list[int]]:
        chardev = f"socket,id=vu{index},path={self.socket_path}"
        if self.server:
            chardev += ",server=on,wait=off"
        elif self.reconnect is not None:
            chardev += f",reconnect={self.reconnect}"
        netdev = f"vhost-user,id=n{index},chardev=vu{index}"
        vectors = 2 * self.queues + 2 if self.msix else 0
        dev = f"virtio-net-pci,netdev=n{index},mac={self.mac},romfile=,vectors={vectors}"
        if self.queues > 1:
            netdev += f",queues={self.queues}"
            dev += ",mq=on"
        dev += _opts(self.device)
        return ["-chardev", chardev, "-netdev", netdev, "-device", dev], []


Nic = TapNic | FdNic | VhostUserNic


def open_macvtap(ifname: str, netns: str | None = None) -> int:
    """Open the character device of macvtap link ``ifname`` and return the descriptor.

    The device numbers come from sysfs (``/sys/class/net/IF/macvtap/tapN/dev``, read inside
    ``netns``); the node is made in a private temporary directory (no dependence on udev,
    nothing left in /dev), opened, and removed again.
    """
    prefix = ["ip", "netns", "exec", netns] if netns else []
    script = f"cat /sys/class/net/{shlex.quote(ifname)}/macvtap/tap*/dev"
    proc = subprocess.run(
        [*prefix, "sh", "-c", script], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or ":" not in proc.stdout:
        raise VmError(f"{ifname} is not a macvtap link: {proc.stderr.strip()}")
    major, minor = (int(x) for x in proc.stdout.strip().split(":"))
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-mt-") as tmp:
        node = os.path.join(tmp, "tap")
        os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
        return os.open(node, os.O_RDWR | os.O_CLOEXEC)
