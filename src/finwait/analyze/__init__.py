"""finwait.analyze: connections from captures — lifecycle, close
classification, anomalies, explanations (docs/analyze.md)."""

from .classify import CLOSES, HANDSHAKES, Analysis, classify
from .run import analyze_file, connection_trace
from .tracker import ANOMALIES, Tracker

__all__ = [
    "ANOMALIES",
    "CLOSES",
    "HANDSHAKES",
    "Analysis",
    "Tracker",
    "analyze_file",
    "classify",
    "connection_trace",
]
