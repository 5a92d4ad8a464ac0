"""``python -m shared.erase``: the command is ``shared/commands/erase.py``."""

import sys

from shared.commands.erase import main

sys.exit(main())
