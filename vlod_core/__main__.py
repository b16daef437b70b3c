import sys

from vlod_core.cli import main

if __name__ == "__main__":  # a process started by spawn (the toy build's student) may import the main module
    sys.exit(main())
