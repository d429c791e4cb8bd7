#!/usr/bin/env python
"""Django's command-line utility for Forkview (installed, the same is the ``forkview`` command)."""

from dashboard.cli import main

if __name__ == "__main__":
    main()
