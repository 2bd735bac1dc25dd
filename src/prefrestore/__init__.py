"""prefrestore: Pref-Restore blind face restoration (arXiv 2601.19506)."""

__version__ = "0.1.0"
