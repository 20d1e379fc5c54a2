"""Live transcription: audio capture, the inference worker, and the crash-safe journal of a take.

The pipeline (the same for the microphone and for ``--input FILE``)::

    source thread / PortAudio callback --(bounded queue of audio blocks)--> worker thread
        worker, every ``LIVE_UPDATE_SECONDS``: drain the queue, resample to the engine's rate,
        append the audio to the journal, run the shared streaming :class:`~pianonotes.engine.Engine`,
        journal the note events, publish a :class:`Snapshot` for the view.

The PortAudio callback only copies the block into the queue; when the queue is full the block is
dropped and counted, never blocking the audio thread. A file source played ``fast`` waits for room
instead, so nothing is dropped and the notes equal offline transcription of the file.

The journal of a take lives in ``<cache>/takes/<timestamp>/`` (``<cache>`` is
:func:`pianonotes.fileio.cache_dir`: ``$PIANONOTES_CACHE``, else the platform's user cache folder,
``~/.cache/pianonotes`` on Linux): ``audio.f32`` (raw float32, little-endian, mono, no header, at the
engine's rate, or with ``--record`` at the source's own rate; take.json holds ``sample_rate`` and
``audio_format`` ``"f32le"``; each block goes to the OS as it is written, synced to the disk every
``JOURNAL_FLUSH_SECONDS``, so after a crash its samples are just its size // 4), ``events.jsonl`` (note
starts and finished notes, flushed as often) and ``take.json`` (model, outputs requested, status). After a
crash or SIGKILL at most about one second is lost; :func:`recover` rebuilds the take from it.
Takes journaled before (``audio.wav``, float32 WAV) are still read.

sounddevice and the network's runtime (ONNX Runtime) are imported inside functions; torch never is
(unless a checkpoint has no ONNX export).

Modules (each imports only those above it): :mod:`devices`, :mod:`sources`, :mod:`journal`, :mod:`outputs`, :mod:`session`, :mod:`recovery`.
"""
