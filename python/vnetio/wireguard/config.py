"""The wg-quick file format: what ``wg-quick`` and ``wg showconf`` read and write."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Config", "PeerConfig"]


@dataclass(frozen=True)
class PeerConfig:
    """A ``[Peer]`` section."""

    public_key: str
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    preshared_key: str | None = None
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class Config:
    """A wg-quick file: the ``[Interface]`` keys vnetio uses, the peers, and what it does not
    use (``ignored``: (section, key) pairs such as ("Interface", "DNS"))."""

    private_key: str
    addresses: tuple[str, ...] = ()
    listen_port: int | None = None
    mtu: int | None = None
    peers: tuple[PeerConfig, ...] = ()
    ignored: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def parse(cls, text: str, *, source: str = "<text>") -> Config:
        """Read the wg-quick format (``wg showconf`` output included)."""
        interface: dict[str, str] = {}
        peers: list[dict[str, str]] = []
        ignored: list[tuple[str, str]] = []
        for name, where, entries in _sections(text, source):
            if name == "Interface":
                if interface:
                    raise ValueError(f"{where}: a second [Interface] section")
                section, known = interface, _INTERFACE_KEYS
            else:
                section, known = {}, _PEER_KEYS
                peers.append(section)
            for key, value in entries:
                lower = key.lower()
                if lower not in known:
                    ignored.append((name, key))
                elif lower in _LIST_KEYS and lower in section:
                    section[lower] += "," + value  # repeated AllowedIPs/Address lines add up
                else:
                    section[lower] = value
        if "privatekey" not in interface:
            raise ValueError(f"{source}: the [Interface] section has no PrivateKey")
        return cls(
            private_key=interface["privatekey"],
            addresses=_split(interface.get("address", "")),
            listen_port=_int(interface.get("listenport"), "ListenPort", source),
            mtu=_int(interface.get("mtu"), "MTU", source),
            peers=tuple(_peer(p, source) for p in peers),
            ignored=tuple(ignored),
        )


def _sections(text: str, source: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The sections of a wg-quick file in order: ("Interface" or "Peer", where it starts,
    its KEY = VALUE entries). Comments and blank lines are left out."""
    sections: list[tuple[str, str, list[tuple[str, str]]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        header = re.fullmatch(r"\[\s*(\w+)\s*\]", line)
        if header:
            name = header.group(1).capitalize()
            if name not in ("Interface", "Peer"):
                raise ValueError(
                    f"{where}: unknown section [{header.group(1)}]; a wg-quick file has "
                    "one [Interface] and any number of [Peer] sections"
                )
            sections.append((name, where, []))
        elif not sections:
            raise ValueError(f"{where}: {line!r} comes before any [Interface] or [Peer]")
        elif "=" not in line:
            raise ValueError(f"{where}: {line!r} is not KEY = VALUE")
        else:
            key, value = (part.strip() for part in line.split("=", 1))
            sections[-1][2].append((key, value))
    return sections


_INTERFACE_KEYS = {"privatekey", "address", "listenport", "mtu"}
_PEER_KEYS = {"publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"}
_LIST_KEYS = {"address", "allowedips"}


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(value: str | None, key: str, source: str) -> int | None:
    if value is None or value.lower() == "off":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{source}: {key} = {value!r} is not a number") from None


def _peer(section: dict[str, str], source: str) -> PeerConfig:
    if "publickey" not in section:
        raise ValueError(f"{source}: a [Peer] section has no PublicKey")
    return PeerConfig(
        public_key=section["publickey"],
        endpoint=section.get("endpoint"),
        allowed_ips=_split(section.get("allowedips", "")),
        preshared_key=section.get("presharedkey"),
        persistent_keepalive=_int(
            section.get("persistentkeepalive"), "PersistentKeepalive", source
        ),
    )
