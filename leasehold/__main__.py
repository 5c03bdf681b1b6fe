"""`python -m leasehold` is the `leasehold` command."""

import sys

from leasehold.cli import main

sys.exit(main())
