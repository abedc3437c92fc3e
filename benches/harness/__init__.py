"""The shared harness of the benchmark scripts in ``benches/``: one place for what they all do.

- ``cli``: the shared options (``--seconds``, ``--repeat``, ``--out``, ``--json``, ...), the
  rounds of ``--repeat``, the privilege check and the entry point that turns SIGTERM into
  Ctrl-C so every namespace is removed;
- ``pairing``: every "A / B" ratio from paired, interleaved runs (one run of each side, back
  to back, the order alternating; the median of the per-pair ratios with its range; noisy
  pairs discarded, replaced and reported), used by ``bridge_loop``, ``forwarder``,
  ``checksum_scapy``, ``capture_loop`` and ``filter_loop``;
- ``report``: number formats, per-round ratios (the older scripts: every implementation once
  per round, the order rotating), and writing a report (stdout, ``--out``, ``--json``, a
  marked section of BENCHMARKS.md);
- ``procs``: the parent's side of child processes (JSON lines), the native baselines'
  ``cargo build``, CPU accounting from ``/proc`` (``OtherCpu``: what the rest of the machine
  used during a run) and waiting while another benchmark runs;
- ``child``: what runs inside a benchmark's namespace: the bridge-loop command protocol,
  the one read-and-count loop of the one-frame-per-call peers, attaching an fd to a TAP by
  hand, the unpaced vnetio writer, SIGINT restored in readers.

Scripts run as ``python benches/NAME.py`` have ``benches/`` on ``sys.path`` and import
``harness`` directly; the bridge-loop children in ``benches/impls/`` add it themselves.
Nothing here is timed: the hot loops in ``child`` make the same calls the peers' own users
write, with no wrapper between the loop and the call.
"""
