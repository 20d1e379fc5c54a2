"""Input devices: listing, choosing one by index or name, and a sample rate it accepts."""

from __future__ import annotations

import dataclasses

from pianonotes.errors import PianonotesError

COMMON_RATES = (16000, 22050, 32000, 44100, 48000, 8000, 11025, 88200, 96000)
PORTAUDIO_HINT = ("PortAudio library not found; install it (Debian/Ubuntu: apt-get install libportaudio2, "
                  "macOS: brew install portaudio)")


def import_sounddevice():
    """``sounddevice``, or a PianonotesError with an install hint when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError('PortAudio library not found')
        raise PianonotesError(PORTAUDIO_HINT) from exc
    except ImportError as exc:
        raise PianonotesError("the sounddevice package is missing; pip install sounddevice") from exc
    return sd


@dataclasses.dataclass(frozen=True)
class InputDevice:
    """An audio input: PortAudio index, name, input channels, default rate (Hz), host API."""

    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str = ""
    is_default: bool = False


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel (empty list when there is none)."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        apis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise PianonotesError(f"cannot list audio devices: {exc}") from exc
    default_in = _default_input_index(sd)
    out = []
    for d in devices:
        if int(d.get("max_input_channels", 0)) > 0:
            api = apis[d["hostapi"]]["name"] if 0 <= d.get("hostapi", -1) < len(apis) else ""
            out.append(InputDevice(int(d["index"]), str(d["name"]), int(d["max_input_channels"]),
                                   float(d["default_samplerate"]), api, int(d["index"]) == default_in))
    return out


def _default_input_index(sd) -> int:
    try:
        dev = sd.default.device
        idx = dev[0] if isinstance(dev, (list, tuple)) or hasattr(dev, "__getitem__") else dev
        return int(idx) if idx is not None else -1
    except (TypeError, ValueError, IndexError):
        return -1


def resolve_device(spec: str | int | None) -> InputDevice:
    """The input device named by ``spec``: None (the default), an index, or part of its name."""
    devices = list_input_devices()
    if not devices:
        raise PianonotesError("no audio input device found; connect a microphone (or check that this user "
                              "may use the sound card), then run `pianonotes devices`")
    if spec is None or str(spec).strip() == "":
        for d in devices:
            if d.is_default:
                return d
        return devices[0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        for d in devices:
            if d.index == int(text):
                return d
        raise PianonotesError(f"no input device with index {text}; run `pianonotes devices` to list them")
    exact = [d for d in devices if d.name.lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d.name.lower()]
    if not matches:
        raise PianonotesError(f"no input device matching '{text}'; run `pianonotes devices` to list them")
    if len(matches) > 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in matches[:5])
        raise PianonotesError(f"'{text}' matches several input devices ({names}); give the index instead")
    return matches[0]


def choose_samplerate(device: InputDevice, requested: int | None, engine_rate: int) -> int:
    """A capture rate the device accepts: ``requested`` if given (else an error listing the rates that
    work), otherwise the engine's rate, the device's default rate, or another common rate."""
    sd = import_sounddevice()

    def ok(rate: float) -> bool:
        try:
            sd.check_input_settings(device=device.index, channels=1, dtype="float32", samplerate=rate)
            return True
        except Exception:  # PortAudioError or ValueError('Invalid sample rate')
            return False

    if requested is not None:
        if ok(requested):
            return int(requested)
        working = [r for r in sorted(set(COMMON_RATES)) if ok(r)]
        hint = f"rates that work: {', '.join(map(str, working))}" if working else "no common rate works"
        raise PianonotesError(f"input device '{device.name}' does not support {requested} Hz; {hint}")
    for rate in (engine_rate, int(device.default_samplerate), *COMMON_RATES):
        if rate > 0 and ok(rate):
            return int(rate)
    raise PianonotesError(f"input device '{device.name}' accepts none of the common sample rates; "
                          "choose another with --input-device")
