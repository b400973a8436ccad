import sys

from faiser.cli import main

sys.exit(main())
