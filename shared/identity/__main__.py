"""``python -m shared.identity``: the commands are ``shared/commands/identity.py``."""

import sys

from shared.commands.identity import main

sys.exit(main())
