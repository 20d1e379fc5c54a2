"""The one streaming protocol every stage that sees a stream implements.

A stream consumes its input in blocks of any size and returns, for each block, exactly the output that
became computable; :meth:`Stream.flush` ends the stream as if its input were followed by silence (zeros),
so that ``concat(push(a), push(b), ..., flush())`` equals the offline function applied to ``a + b + ...``
whatever the block sizes. :meth:`Stream.reset` returns the stream to its freshly built state, so that one
object can serve several streams in turn (a reset stream behaves exactly as a new one).

The implementations, with their blocks and outputs:

* :class:`pianonotes.audio.StreamResampler`: (n,) float32 audio at ``orig_sr`` Hz in, (m,) float32 at
  ``target_sr`` Hz out;
* :class:`pianonotes.features.logspec.StreamingFrontEnd` and :class:`pianonotes.features.msmd.MsmdStream` (made by a front
  end's ``streaming()``): (n,) float32 mono audio at the front end's ``sample_rate`` in, (frames,
  n_features) float32 features at its ``fps`` out;
* :class:`pianonotes.features.match.SpectrumMatch` (when the checkpoint has an ``input_match``): features
  in, the same frames out with their level and spectral tilt matched to the training audio's;
* :class:`pianonotes.engine.NetworkStream`: (frames, n_features) float32 features in, probabilities by
  head out (``frame``, ``onset``, ``velocity``, v2's ``key``: (frames, 88); ``pedal``: (frames, 1));
* :class:`pianonotes.decode.StreamingDecoder`: those probabilities in (a dict, one frame per row),
  the :class:`~pianonotes.notes.Note` list that ended out (times in seconds);
* :class:`pianonotes.engine.Engine`, the stages above in a row: (n,) float32 mono audio in, an
  :class:`~pianonotes.engine.Update` out (its ``flush`` is also called ``finish``).

Each stage carries its own history (window overlap, the network's ``past`` frames, the decoder's open
notes), so memory is bounded by the context, not by the length of the stream.
"""

from __future__ import annotations

from typing import Protocol, TypeVar, runtime_checkable

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


@runtime_checkable
class Stream(Protocol[In, Out]):
    """A stateful, exact, incremental processor (as madmom's online processors): see the module doc."""

    def push(self, block: In) -> Out:
        """Consume ``block`` (any length, including empty) and return the output that became computable:
        possibly empty, never a guess that a later block could change."""
        ...

    def flush(self) -> Out:
        """End the stream: return the rest of the output, as if the input were padded with zeros. After
        ``flush`` the stream is finished; :meth:`reset` starts another."""
        ...

    def reset(self) -> None:
        """Forget everything pushed: the stream then behaves exactly as a newly built one."""
        ...
