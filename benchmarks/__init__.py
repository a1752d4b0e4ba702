"""Benchmarks of fanfare_async against local servers only (not shipped).

Run ``python -m benchmarks`` (``--quick`` for the seconds-long smoke pass, ``--only NAME``
for one benchmark, ``--json PATH`` to keep the figures). Every payload comes from the
deterministic generator in :mod:`fanfare_async._fake_data`; nothing talks to the network.
"""
