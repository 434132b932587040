"""The one exception type for problems a user can fix (bad files, unsupported models, wrong inputs).

The CLI turns it into ``thresher: error: <message>`` and exit status 2, in one place
(``sim/cli.py``); library code raises it with a message that says what and where.
"""


class ThresherError(Exception):
    """A user-facing error: bad input, an unsupported model, impossible parameters."""
