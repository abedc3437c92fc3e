"""Adapter hygiene: create, delete, list and clean up persistent TUN/TAP adapters (and list,
delete and clean up macvtap links).

A *persistent* adapter outlives the process that made it; one that no process holds open
is *orphaned* and usually a leftover (the cause of many ``EBUSY``/``EINVAL`` surprises).
This module lists every TUN/TAP adapter of a network namespace with what the kernel knows
about it, tells which processes hold it open, and removes orphans without ever touching an
adapter that is in use or an interface of another kind.

Where each fact comes from:

* mode, owner, group, persistence, multi-queue, attached queues, MTU, carrier: rtnetlink
  (``vnetio._core.list_links``), which works inside any namespace;
* flags: the ``tun_flags`` file in the namespace's sysfs (read through ``ip netns exec``
  for another namespace); when sysfs cannot be read they are derived from the rtnetlink
  attributes, which lack ``IFF_NAPI``/``IFF_NAPI_FRAGS``;
* holders: every process's descriptors on ``/dev/net/tun`` (``/proc/PID/fd``) and their
  ``iff:`` line in ``/proc/PID/fdinfo``; the fdinfo names the adapter but not its
  namespace, so as root each descriptor is also asked for its adapter's namespace
  (``pidfd_getfd`` + ``TUNGETDEVNETNS``); without that, descriptors are matched by name.
  For a multi-queue adapter the kernel also reports how many queues are attached; for a
  single-queue one, carrier (on exactly while its descriptor is attached, unless the holder
  turned it off) and the scan decide. Deleting never relies on either: see below;
* age: the kernel records no creation time for a network device. vnetio keeps a small
  ledger (``/run/vnetio`` for root, ``$XDG_RUNTIME_DIR/vnetio`` otherwise,
  ``$VNETIO_STATE_DIR`` when set) of when it created an adapter or first saw it, and also
  takes the change time of the adapter's sysfs directory. Both are at or after the adapter's
  creation, so the age is a *lower bound*: ``cleanup(older_than=...)`` may keep an adapter
  that is older than it knows, never delete one that is younger.
* raised queues: a capture records in the same directory that it raised an adapter's
  kernel queue, and removes the record once the queue is back; a record left by a process
  that was killed names a queue left raised (see ``vnetio.hygiene.queues``).

Deleting an adapter (``delete_adapter`` without ``force``, and ``cleanup``) works the way
``ip tuntap del`` does: attach to it, clear ``TUNSETPERSIST`` and close, so the kernel
removes it on the last close. A single-queue adapter that someone holds refuses the attach
(``EBUSY``); a multi-queue one is checked for other queues after the attach; and the kernel
removes a non-persistent adapter only when its *last* descriptor closes, so a process that
is using an adapter never loses it (one that attaches in the instant between that check and
the close keeps the adapter, no longer persistent, until it closes it). This also lets a
non-root owner remove their own adapters.

Macvtap links (``vnetio.Macvtap``, ``ip link add ... type macvtap``) are listed too, with
their lower device and mode. Such a link is not owned by a descriptor: it lives until it is
deleted, and the kernel keeps no count of the descriptors open on its character device
(``/dev/tapN``). Its holders are the processes with a descriptor on that device, found by
its device number (from the link's sysfs entry, read in its namespace); one that no process
holds is orphaned. Deleting one (``cleanup``, ``delete_adapter``) looks for holders again
and then removes the link over rtnetlink: a process that opens it in that instant, or one
this process cannot see (without root; or in another PID namespace, such as a container),
loses it. Without root, the scan cannot read other users' descriptors, so every macvtap
link it finds no holder for counts as possibly held and is kept.
"""

from __future__ import annotations

from .listing import list_adapters
from .model import AdapterInfo, CleanupEntry, CleanupResult, Holder, format_duration, parse_duration
from .ops import cleanup, create_adapter, delete_adapter

__all__ = [
    "AdapterInfo",
    "CleanupEntry",
    "CleanupResult",
    "Holder",
    "cleanup",
    "create_adapter",
    "delete_adapter",
    "format_duration",
    "list_adapters",
    "parse_duration",
]
