"""Benchmarks of rolo's WebSocket serving against a plain Autobahn echo server (``python -m bench``).

Each server runs in a process of its own (:mod:`bench.servers`), and so does the load generator
(:mod:`bench.load`); :mod:`bench.__main__` starts them, prints the table and draws the chart.
"""
