"""`python -m daycare` and the `daycare` script: the command line of `daycare.cli`.

Loading it takes a moment (Tortoise and the models); a Ctrl-C meanwhile ends quietly.
"""

import os
import sys


def main() -> int:
    """Loads the command line, then runs it; exits 130 without a traceback if interrupted while loading."""
    try:
        from daycare.cli import main as cli_main
    except KeyboardInterrupt:
        print("daycare: interrupted while loading; nothing was changed.", file=sys.stderr, flush=True)
        # Nothing is open yet. Exiting here keeps the code 130: a module interrupted half-way can
        # leave the interpreter marked as killed by SIGINT, which a normal exit would then obey.
        os._exit(130)
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
