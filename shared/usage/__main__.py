"""``python -m shared.usage``: the command is ``shared/commands/usage.py``."""

import sys

from shared.commands.usage import main

sys.exit(main())
