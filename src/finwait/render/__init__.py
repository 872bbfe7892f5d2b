"""finwait.render."""
