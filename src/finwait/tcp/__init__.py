"""finwait.tcp: the sans-IO RFC 9293 engine."""
