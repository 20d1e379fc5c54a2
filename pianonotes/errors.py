"""The package's one exception type. The CLI turns it into a single red line and exit code 1."""


class PianonotesError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""
