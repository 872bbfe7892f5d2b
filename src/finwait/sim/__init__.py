"""finwait.sim."""
