"""The benchmark of ``bench/compare.py``, one module per section (run that script)."""
