"""``python -m batchlane`` runs the CLI (used to start model servers with the current interpreter)."""

from batchlane.cli.main import main

if __name__ == "__main__":
    main()
