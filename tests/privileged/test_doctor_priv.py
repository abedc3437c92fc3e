"""`vnetio doctor` run for real by processes with fewer privileges than the test.

The unprivileged runs happen in a private mount namespace whose /dev/net/tun is a node of
the test's own (mode 0600 or 0666) bind-mounted over the real one; the host's node is never
changed (TAP-FACTS.md, "Testing as an unprivileged user").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.privileged

NOBODY = 65534
DOCTOR = [sys.executable, "-m", "vnetio._doctor", "--json"]
# CAP_DAC_READ_SEARCH only: enough to start the interpreter under /root, nothing more.
AS_NOBODY = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all,+dac_read_search",
    "--ambient-caps=+dac_read_search",
]
# In the private mount namespace: a tmpfs (so device nodes work), our node, bind it over
# /dev/net/tun, then run the command. $1 = directory, $2 = mode, the rest = command.
WITH_OWN_TUN_NODE = (
    'mount -t tmpfs vnetio-t "$1" && mknod "$1/tun" c 10 200 && chmod "$2" "$1/tun" '
    '&& mount --bind "$1/tun" /dev/net/tun && shift 2 && exec "$@"'
)


def run_doctor(argv: list[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout, f"no output; exit {proc.returncode}, stderr: {proc.stderr}"
    findings = json.loads(proc.stdout)
    status = 1 if any(f["status"] == "fail" for f in findings) else 0
    assert proc.returncode == status, proc.stdout
    return proc.returncode, {f["check"]: f for f in findings}


def run_doctor_as_nobody(tmp_path: Path, mode: str) -> tuple[int, dict[str, dict[str, Any]]]:
    host = os.stat("/dev/net/tun")
    node_dir = tmp_path / "dev"
    node_dir.mkdir()
    try:
        return run_doctor(
            [
                "unshare", "--mount", "--propagation", "private",
                "sh", "-c", WITH_OWN_TUN_NODE, "sh", str(node_dir), mode,
                *AS_NOBODY, *DOCTOR,
            ]
        )  # fmt: skip
    finally:
        after = os.stat("/dev/net/tun")
        assert (after.st_ino, after.st_mode, after.st_dev) == (
            host.st_ino,
            host.st_mode,
            host.st_dev,
        ), "the host's /dev/net/tun changed"
        assert not os.path.ismount(node_dir), "the tmpfs leaked out of the mount namespace"


def test_unprivileged_with_0600_node(tmp_path: Path) -> None:
    status, findings = run_doctor_as_nobody(tmp_path, "0600")
    assert status == 1

    cap = findings["cap-net-admin"]
    assert cap["status"] == "warn"
    assert f"uid {NOBODY}" in cap["summary"]
    assert "setcap cap_net_admin+ep" in cap["fix"]
    assert f"ip tuntap add dev vn0 mode tap user {NOBODY}" in cap["fix"]
    assert f"owner={NOBODY}" in cap["fix"]

    mode = findings["tun-mode"]
    assert mode["status"] == "warn"
    assert "mode 0600" in mode["summary"]
    assert mode["fix"].startswith("sudo chmod 0666 /dev/net/tun")

    opened = findings["tun-open"]
    assert opened["status"] == "fail"
    assert "Permission denied" in opened["summary"]
    assert opened["fix"].startswith("sudo chmod 0666 /dev/net/tun")

    assert findings["tun-node"]["status"] == "ok"
    assert findings["tun-features"]["status"] == "warn"  # cannot open the node
    offload = findings["offload"]
    assert offload["status"] == "warn"  # probing needs root
    assert "not checked" in offload["summary"]


def test_unprivileged_with_0666_node(tmp_path: Path) -> None:
    status, findings = run_doctor_as_nobody(tmp_path, "0666")

    assert findings["cap-net-admin"]["status"] == "warn"
    assert findings["tun-mode"]["status"] == "ok"
    assert findings["tun-open"]["status"] == "ok"
    assert findings["versions"]["status"] == "ok", findings["versions"]
    assert findings["tun-features"]["status"] == "ok", findings["tun-features"]
    assert status == 0, findings


def test_root_without_cap_net_admin() -> None:
    _, findings = run_doctor(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", *DOCTOR]
    )
    cap = findings["cap-net-admin"]
    assert cap["status"] == "warn"
    assert "uid 0" in cap["summary"]
    # Not in the bounding set: setcap cannot help, the environment must grant it.
    assert "--cap-add NET_ADMIN" in cap["fix"]
    assert "setcap" not in cap["fix"]
    assert findings["tun-open"]["status"] == "ok"


def test_root() -> None:
    status, findings = run_doctor(DOCTOR)
    assert status == 0, findings
    for check in ("versions", "abi", "tun-node", "tun-open", "cap-net-admin", "netns", "sysfs"):
        assert findings[check]["status"] == "ok", findings[check]
    features = findings["tun-features"]
    assert features["status"] == "ok", features
    for name in ("IFF_TUN", "IFF_TAP", "IFF_MULTI_QUEUE", "IFF_VNET_HDR"):
        assert name in features["summary"]
    offload = findings["offload"]
    assert offload["status"] == "ok", offload
    assert "CSUM TSO4 TSO6" in offload["summary"]
