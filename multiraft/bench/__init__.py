"""Benchmarks behind ``multiraft bench``. Figures go to ``docs/performance.md``."""
