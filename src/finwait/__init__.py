"""finwait: TCP connection management you can run, watch and check.

An RFC 9293 engine (``tcp``, ``host``), a deterministic simulator (``sim``),
the engine live on a TUN device (``live``), pcap/pcapng I/O (``capture``), a
capture analyzer (``analyze``) and ladder-diagram renderers (``render``).
"""

__version__ = "0.1.0"
