"""`python -m slmcnn` runs the command line."""

import sys

from slmcnn.cli import main

sys.exit(main())
