"""`python -m codex_state.cli`: the same as the `codex-state` console script."""

import sys

from codex_state.cli import main

sys.exit(main())
