import sys

from rdvq.app.main import main

sys.exit(main())
