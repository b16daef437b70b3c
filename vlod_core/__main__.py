import sys

from vlod_core.cli import main

if __name__ == "__main__":  # guarded: multiprocessing's spawn may import the main module in its children
    sys.exit(main())
