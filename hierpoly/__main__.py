"""`python -m hierpoly ...`, and the `hierpoly` command an installed package puts on the PATH (pyproject.toml)."""
import sys

from hierpoly.cli import main

if __name__ == "__main__":
    sys.exit(main())
