import sys

from vlod_core.cli import main

if __name__ == "__main__":  # guarded: importing this module (a tool, a test) must not run the CLI
    sys.exit(main())
