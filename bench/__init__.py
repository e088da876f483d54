"""Benchmarks of exburn_nb against a hand-written PyTorch loop and peer libraries.

Run ``python -m bench`` (``make bench``); ``bench/README.md`` explains every table.
"""
