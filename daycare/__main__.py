"""`python -m daycare` and the `daycare` script: the command line of `daycare.cli`.

Loading what a command runs on takes a moment (Tortoise and the models, imported once the arguments
are parsed); a Ctrl-C meanwhile ends quietly.
"""

import os
import sys


def main() -> int:
    """Parses the arguments and loads what the command needs, then runs it; exits 130 without a traceback
    if interrupted while loading."""
    try:
        from daycare.cli import command_load

        command = command_load()
    except KeyboardInterrupt:
        print("daycare: interrupted while loading; nothing was changed.", file=sys.stderr, flush=True)
        # Nothing is open yet. Exiting here keeps the code 130: a module interrupted half-way can
        # leave the interpreter marked as killed by SIGINT, which a normal exit would then obey.
        os._exit(130)
    return command()


if __name__ == "__main__":
    sys.exit(main())
