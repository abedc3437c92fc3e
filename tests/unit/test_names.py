"""Interface names and constructor arguments are validated before any syscall.

The proof that the kernel is not touched: a bad name raises ValueError (never OSError or
PermissionError, which is what reaching /dev/net/tun would give an unprivileged user),
even with ``netns=`` naming a namespace that does not exist, and no adapter appears.
"""

from __future__ import annotations

import pytest
import vnetio

from tests.netutil import root_tuntaps

BAD_NAMES = [
    pytest.param("a/b", id="slash"),
    pytest.param("", id="empty"),
    pytest.param("a" * 16, id="16-bytes"),
    pytest.param("vn" + "x" * 30, id="long"),
    pytest.param("\u00e9" * 8, id="16-utf8-bytes-8-chars"),
    pytest.param("a b", id="space"),
    pytest.param("a\tb", id="tab"),
    pytest.param("vn0\n", id="newline"),
    pytest.param(" vn0", id="leading-space"),
    pytest.param("a\0b", id="nul"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("vn0:1", id="colon"),
]
GOOD_NAMES = ["vn0", "vn%d", "a" * 15, "\u00e9" * 7, "vn-test_0.1"]
MISSING_NETNS = "vnetio-t-does-not-exist"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_validate_ifname_rejects(name: str) -> None:
    with pytest.raises(ValueError) as info:
        vnetio._core.validate_ifname(name)
    assert not isinstance(info.value, OSError)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_validate_ifname_accepts(name: str) -> None:
    assert vnetio._core.validate_ifname(name) is None


@pytest.mark.parametrize("cls", [vnetio.Tap, vnetio.Tun])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_adapter_rejects_bad_name_without_touching_the_kernel(
    cls: type[vnetio.Tap | vnetio.Tun], name: str
) -> None:
    before = root_tuntaps()
    for kwargs in ({}, {"netns": MISSING_NETNS}):
        with pytest.raises(ValueError) as info:
            cls(name, **kwargs)  # type: ignore[arg-type]
        assert not isinstance(info.value, OSError), info.value
        assert "name" in str(info.value)
    assert root_tuntaps() == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queues": 0},
        {"queues": -1},
        {"mtu": 10},
        {"mtu": 1 << 20},
    ],
)
def test_adapter_rejects_bad_arguments_before_the_kernel(kwargs: dict[str, int]) -> None:
    before = root_tuntaps()
    with pytest.raises((ValueError, OverflowError)) as info:
        vnetio.Tap("vnbad0", netns=MISSING_NETNS, **kwargs)  # type: ignore[arg-type]
    assert not isinstance(info.value, OSError), info.value
    assert root_tuntaps() == before


def test_superframes_mode_needs_offload() -> None:
    with pytest.raises(ValueError, match="needs offload=True"):
        vnetio.Tap("vnx0", rx_mode="superframes")
    with pytest.raises(ValueError, match="rx_mode"):
        vnetio.Tap("vnx0", offload=True, rx_mode="bogus")
