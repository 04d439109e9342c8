"""``python -m circlet.agent --url URL [--token TOKEN | $CIRCLET_RUNNER_TOKEN]``."""

from circlet.agent.cli import main

if __name__ == "__main__":
    main()
