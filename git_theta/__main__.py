import sys

from git_theta.main import main

sys.exit(main())
