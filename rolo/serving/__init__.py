"""Servers for a gateway. :mod:`rolo.serving.twisted` serves HTTP and WebSockets on Twisted."""
