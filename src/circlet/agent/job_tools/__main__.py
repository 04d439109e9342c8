import sys

from circlet.agent.job_tools.cli import main

sys.exit(main(sys.argv[1:]))
