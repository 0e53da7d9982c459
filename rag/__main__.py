"""``python -m rag``: the ``rag`` command."""

import sys

from rag.apps.cli.main import main

sys.exit(main())
