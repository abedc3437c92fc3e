"""Tests that boot a real Linux guest under QEMU as a peer (the guest rig, ``rig.py``).

Benchmarks import the rig from the repository root as ``tests.vm.rig``.
"""
