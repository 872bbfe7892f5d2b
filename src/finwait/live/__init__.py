"""finwait.live."""
