"""finwait.analyze."""
