"""``python -m shared.archive``: the command is ``shared/commands/archive.py``."""

import sys

from shared.commands.archive import main

sys.exit(main())
