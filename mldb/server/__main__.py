"""``python -m mldb.server serve DB ...`` (the same as ``mldb serve DB ...``)."""

import sys

from mldb.server.cli import serve_main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(serve_main(args[1:] if args[:1] == ["serve"] else args))
