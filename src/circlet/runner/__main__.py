"""``python -m circlet.runner --url URL [--token TOKEN | $CIRCLET_RUNNER_TOKEN]``."""

from circlet.runner.cli import main

if __name__ == "__main__":
    main()
