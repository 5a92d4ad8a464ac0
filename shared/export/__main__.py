"""``python -m shared.export``: the command is ``shared/commands/export.py``."""

import sys

from shared.commands.export import main

sys.exit(main())
