"""``python -m shared.importer``: the command is ``shared/commands/importer.py``."""

import sys

from shared.commands.importer import main

sys.exit(main())
