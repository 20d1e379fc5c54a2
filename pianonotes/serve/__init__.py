"""``pianonotes serve``: record, watch and download the score in the browser.

A local web app (Starlette + uvicorn) around the same pieces as ``listen`` and ``transcribe``:

- ``/ws/record``: the page streams microphone PCM over a WebSocket; a :class:`~pianonotes.live.LiveSession`
  runs it through the shared streaming :class:`~pianonotes.engine.Engine` and journals the take exactly
  like ``listen`` (so a dropped connection or a killed server keeps it recoverable); the socket sends
  back the sounding keys, key probabilities, note starts, finished notes, level and latency.
- ``/api/upload``: an audio file as the request body, transcribed like ``transcribe`` does.
- Every take ends with the outputs of :func:`pianonotes.export.write_notes` (MIDI, MusicXML, PDF, SVG
  pages, CSV, JSON), downloadable by take id and format: no client string ever becomes a file path.

Only :mod:`pianonotes.cli.serve` prints; this package raises :class:`~pianonotes.errors.PianonotesError`.
Importing it is cheap: Starlette, uvicorn and torch are imported where they are used.
"""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_UPLOAD_MB = 200.0  # request bodies above this are refused before they are read
MAX_UPLOAD_MINUTES = 30.0  # decoded duration limit of one uploaded file
MAX_TAKE_MINUTES = 60.0  # a recording stops (and is saved) after this much audio
MAX_RECORDINGS = 8  # simultaneous recording sockets
MAX_BLOCK_SECONDS = 1.0  # one WebSocket audio message may hold at most this much audio
CLIENT_RATES = (8000, 192000)  # accepted capture rates (Hz), inclusive
RESUME_SECONDS = 20.0  # a recording whose socket dropped waits this long for the page to reconnect
UPDATE_SECONDS = 0.02  # the server's LiveSession works (and the socket sends) every 20 ms: the page's block
OUTPUT_FORMATS = ("mid", "musicxml", "pdf", "svg", "csv", "json")  # built for every take
