"""finwait.capture."""
