"""``vnetio.Offload``: offload metadata as one typed, immutable object both ways across the
Python/Rust boundary, still readable as the mapping earlier versions returned."""

from __future__ import annotations

import pytest
import vnetio

from tests.packets import tcp4_superframe


def superframe(payload: int = 3000) -> tuple[bytes, vnetio.Offload]:
    """An Ethernet/IPv4/TCP super-frame with a partial checksum, and its metadata."""
    frame, _ = tcp4_superframe(bytes(payload))
    meta = vnetio.Offload(
        "tcpv4", gso_size=1448, hdr_len=54, csum_start=34, csum_offset=16, needs_csum=True
    )
    return frame, meta


def test_fields_defaults_and_repr() -> None:
    o = vnetio.Offload("tcpv6", ecn=True, gso_size=1400, hdr_len=74, csum_start=54)
    assert (o.gso_type, o.ecn, o.gso_size, o.hdr_len) == ("tcpv6", True, 1400, 74)
    assert (o.csum_start, o.csum_offset, o.needs_csum, o.data_valid) == (54, 0, False, False)
    assert vnetio.Offload().gso_type == "none"
    assert repr(o).startswith('Offload(gso_type="tcpv6", ecn=True, gso_size=1400')


def test_immutable_and_hashable() -> None:
    o = vnetio.Offload("udp_l4", gso_size=1000)
    with pytest.raises(AttributeError):
        o.gso_size = 5  # type: ignore[misc]
    assert hash(o) == hash(vnetio.Offload("udp_l4", gso_size=1000))
    assert len({o, vnetio.Offload("udp_l4", gso_size=1000), vnetio.Offload()}) == 2


def test_reads_as_the_mapping_earlier_versions_returned() -> None:
    o = vnetio.Offload("tcpv4", gso_size=1448, needs_csum=True)
    as_dict = {
        "gso_type": "tcpv4",
        "ecn": False,
        "gso_size": 1448,
        "hdr_len": 0,
        "csum_start": 0,
        "csum_offset": 0,
        "needs_csum": True,
        "data_valid": False,
    }
    assert o == as_dict and o.as_dict() == as_dict and dict(o.items()) == as_dict
    assert list(o) == list(as_dict) == o.keys() and len(o) == 8
    assert o["gso_size"] == 1448 and o.get("nope", 7) == 7 and "ecn" in o
    with pytest.raises(KeyError):
        o["nope"]
    assert o != {**as_dict, "gso_size": 1400}
    assert o != "tcpv4"


def test_bad_values_are_value_errors_naming_the_choices() -> None:
    with pytest.raises(ValueError, match='gso_type must be one of "none", "tcpv4"'):
        vnetio.Offload("udp")
    with pytest.raises(OverflowError):
        vnetio.Offload("tcpv4", gso_size=70000)


def test_round_trip_through_a_batch() -> None:
    frame, meta = superframe()
    batch = vnetio.Batch.from_frames([frame, frame[:60]], offload=[meta, None])
    info = batch.offload_info(0)
    assert isinstance(info, vnetio.Offload) and info == meta
    assert batch.offload_info(1) is None
    # A dict (what earlier versions took and returned) still works, and means the same.
    again = vnetio.Batch.from_frames([frame], offload=[meta.as_dict()])
    assert again.offload_info(0) == meta
    assert again.segment("tap").to_list() == batch.segment("tap").to_list()[:3]


def test_unknown_mapping_keys_are_refused() -> None:
    frame, _ = superframe()
    with pytest.raises(ValueError, match=r'offload\[0\]: unknown key "gso"'):
        vnetio.Batch.from_frames([frame], offload=[{"gso": "tcpv4"}])
    with pytest.raises(ValueError, match="offload"):
        vnetio.Batch.from_frames([frame], offload=[42])
