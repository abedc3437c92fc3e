"""WireGuard endpoints: on a vnetio TUN (the system routes through it) or in-process.

>>> from vnetio import wireguard
>>> key = wireguard.genkey()
>>> len(wireguard.pubkey(key))
44

The protocol (handshake, cookies, timers, rekeying, replay window, ChaCha20-Poly1305) is
boringtun's ``noise`` module in the Rust core; cryptokey routing, roaming and the data path
(Rust threads, no Python per packet) are vnetio's. Two modes:

* ``Interface(key, tun="wg0", addresses=[...])``: a TUN adapter with those addresses, and a
  route through it for every peer's AllowedIPs, as ``wg-quick up`` sets up (needs root);
* ``Interface(key)``: no TUN and no root. The interface itself is the plaintext adapter:
  ``recv_batch``/``send_batch`` carry the IP packets that go through the tunnel, and it takes
  ``set_filter``, capture and scapy inspection like any vnetio adapter (``.adapter``).
"""

from __future__ import annotations

from .config import Config, PeerConfig
from .interface import Interface, Peer, genkey, pubkey

__all__ = ["Config", "Interface", "Peer", "PeerConfig", "genkey", "pubkey"]
