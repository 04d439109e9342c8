import sys

from circlet.runner.job_tools.cli import main

sys.exit(main(sys.argv[1:]))
