"""``python -m ikeguard``: the ``ikeguard`` command line."""

from ikeguard.control.cli import main

if __name__ == "__main__":
    main()
