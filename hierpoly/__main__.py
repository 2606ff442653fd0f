import sys

from hierpoly.cli import main

sys.exit(main())
