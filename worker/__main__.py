"""Entry point for ``python -m worker``."""
import signal

# A process started in the background of a script inherits SIGINT as *ignored*, and Python then
# leaves it ignored: Ctrl-C or a supervisor's SIGINT would do nothing until the agent installs its
# own handler. Restore the normal behaviour before the slow imports.
signal.signal(signal.SIGINT, signal.default_int_handler)

try:
    from worker.cli import main
except KeyboardInterrupt:  # interrupted while starting: nothing to leave yet
    raise SystemExit(130) from None

raise SystemExit(main())
