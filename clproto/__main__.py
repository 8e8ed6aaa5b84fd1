import sys

from clproto.cli import main

sys.exit(main())
