"""The Python side of methods on the core's classes: hands the Rust core the functions
that ``Adapter.recv_batch_async``/``send_batch_async``/``batches``/``async with``,
``Adapter.send_packets``, ``Adapter.capture_to``, ``Batch.to_scapy``, ``Batch.filter``
with a predicate, and tcpdump expressions forward to.

The core never imports vnetio's Python modules (see ARCHITECTURE.md): the package
composes it, supplying these parts once, here, when ``vnetio`` is imported.
"""

from __future__ import annotations

from . import _core, aio, capture, filters, inspect


def install() -> None:
    """Give the core its Python-side functions (once per process)."""
    _core._install_python_layer(
        {
            "recv_batch_async": aio.recv_batch_async,
            "send_batch_async": aio.send_batch_async,
            "batches": aio.batches,
            "aenter": aio.aenter,
            "aexit": aio.aexit,
            "send_packets": inspect.send_packets,
            "capture_to": capture.capture_to,
            "compile_filter": filters.compile,
            "to_scapy": inspect.to_scapy,
            "filter_batch": inspect.filter_batch,
        }
    )


install()
