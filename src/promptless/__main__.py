import sys

from promptless.cli import main

sys.exit(main())
