"""Benchmarks, run by hand.

``python -m bench`` (``./dev bench``) measures rolo's WebSocket serving against a plain Autobahn echo
server: each server runs in a process of its own (:mod:`bench.servers`), and so does the load generator
(:mod:`bench.load`); :mod:`bench.__main__` starts them, prints the table and draws the chart. The other
modules here are scripts of their own (``python bench/broadcast.py``, ``python bench/http_concurrency.py``).
"""
