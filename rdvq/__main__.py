import sys

from rdvq.cli import main

sys.exit(main())
