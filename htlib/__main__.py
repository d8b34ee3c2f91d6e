import sys

from htlib.cli import main

sys.exit(main())
