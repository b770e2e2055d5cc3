"""`python -m daycare`: the same command line as the `daycare` script."""

import sys

from daycare.cli import main

sys.exit(main())
