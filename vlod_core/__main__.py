import sys

from vlod_core.cli import main

sys.exit(main())
