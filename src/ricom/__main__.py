"""``python -m ricom`` runs the command line."""
import sys

from ricom.cli.main import main

sys.exit(main())
