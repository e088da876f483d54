"""``python -m bench``: see :mod:`bench.cli`. Kept tiny: worker processes re-import it."""

if __name__ == "__main__":
    import sys

    from bench.cli import main

    sys.exit(main())
