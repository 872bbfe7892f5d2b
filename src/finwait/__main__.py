"""``python -m finwait``: the same as the ``finwait`` command."""

from finwait.cli import main

if __name__ == "__main__":
    main(prog_name="finwait")
