"""pianonotes: piano audio to notes and sheet music, from a file or live from the microphone.

Importing the package is cheap: torch and music21 load only inside the functions that need them.
"""

__version__ = "0.1.0"

from pianonotes.errors import PianonotesError  # noqa: E402

__all__ = ["PianonotesError", "__version__"]
