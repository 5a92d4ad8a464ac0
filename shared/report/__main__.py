"""``python -m shared.report``: the command is ``shared/commands/report.py``."""

import sys

from shared.commands.report import main

sys.exit(main())
