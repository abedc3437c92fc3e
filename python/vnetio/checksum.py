"""Internet checksums (RFC 1071) for frames, computed in Rust with the GIL released.

>>> from vnetio import checksum
>>> header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")  # checksum field zero
>>> hex(checksum.internet_checksum(header))
'0xb861'

``verify(frame, kind)`` checks a frame's IPv4 header checksum and its TCP, UDP, ICMP or
ICMPv6 checksum (``kind="tap"``: Ethernet frames, VLAN tags allowed; ``"tun"``: raw IP
packets) and returns ``(ip_ok, l4_ok)``, with ``None`` where a checksum does not apply
(IPv6 has no header checksum; fragments, other protocols and IPv4 UDP sent without a
checksum have no transport checksum to check). ``fix(bytearray, kind)`` recomputes them in
place. ``update(check, old, new)`` / ``update32`` apply RFC 1624's incremental update when
one field changes (a router's TTL, a NAT's address). Whole batches:
``Batch.verify_checksums()`` and ``Batch.fix_checksums()``.
"""

from __future__ import annotations

from ._core import fix_checksums as fix
from ._core import internet_checksum
from ._core import update_checksum as update
from ._core import update_checksum32 as update32
from ._core import verify_checksums as verify

__all__ = ["fix", "internet_checksum", "update", "update32", "verify"]
