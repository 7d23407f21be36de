import sys

from tuneforge.main import main

sys.exit(main())
