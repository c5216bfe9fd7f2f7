"""``python -m scgtl._cli``: the ``scgtl`` command without its entry point."""

import sys

from scgtl._cli import main

sys.exit(main())
