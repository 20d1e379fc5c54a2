"""Every rate, range and default in one place; everything else derives from these.

The CLI imports its defaults from here and never restates them.
"""

# Piano keyboard
MIN_PITCH = 21  # A0
MAX_PITCH = 108  # C8
N_KEYS = MAX_PITCH - MIN_PITCH + 1  # 88

# Audio and front end of the default AudioNet
SAMPLE_RATE = 16_000  # Hz
HOP_LENGTH = 320  # samples: 20 ms
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 50.0
FRAME_SECONDS = 1.0 / FRAMES_PER_SECOND

# Live view / streaming engine
LIVE_UPDATE_SECONDS = 0.05  # the view refreshes every 50 ms (the seed's hop)
MAX_LOOKAHEAD_SECONDS = 0.100  # future audio a live output frame may depend on
ROLL_SECONDS = 4.0  # piano roll a live view shows; the session keeps the finished notes ending within it

# Decoding defaults (one source of truth for the library and the CLI)
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.5
MIN_NOTE_SECONDS = 0.05
DEFAULT_VELOCITY = 80

# Evaluation (mir_eval conventions)
ONSET_TOLERANCE = 0.05  # s
OFFSET_RATIO = 0.2
OFFSET_MIN_TOLERANCE = 0.05  # s
SEED_FRAME_SECONDS = 0.05  # the seed's exact-frame accuracy uses 50 ms frames

SUSTAIN_CC = 64
SUSTAIN_ON = 64  # CC64 value at or above which the pedal is down

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")

# Soundfonts (Debian paths). MuseScore General is reserved for evaluation on an unseen piano.
TRAIN_SOUNDFONTS = {
    "fluidr3": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "fluidr3mono": "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3",
    "timgm6mb": "/usr/share/sounds/sf2/TimGM6mb.sf2",
}
# fluid-soundfont-gs (FluidR3_GS.sf2) holds no bank-0 piano preset (it renders silence), so it is not used.
HELDOUT_SOUNDFONTS = {
    "csound": "/usr/share/sounds/sf2/sf_GMbank.sf2",  # allowed, but held out of training for the model card
}
RESERVED_SOUNDFONTS = {
    "musescore": "/usr/share/sounds/sf3/MuseScore_General.sf3",
}
# sha256 of the reserved MuseScore General files we know (Debian musescore-general-soundfont-small 0.2.1:
# MuseScore_General_Lite.sf3). The reservation checks content, not names: a training soundfont whose bytes
# are one of these is refused, and the evaluation name must not resolve to a training soundfont.
RESERVED_SOUNDFONT_SHA256 = {
    "916aaca6b0eb9f9083eb42399614acb2ff4ec72ce28dffff1814592a9696b479",
}
RESERVED_SOUNDFONT_PACKAGE = "musescore-general-soundfont-small"


# Score rhythm: divisions of the quarter note a score's onsets and note values snap to (the first one the
# default; the others only in the beats whose onsets sit on them). Measured in devtools/score_bench.
RHYTHM_GRIDS: dict[str, tuple[int, ...]] = {
    "fine": (4, 3, 6, 8),  # 16ths; 8th triplets, 16th triplets and 32nds where they are played
    "16ths": (4,),  # 16ths only: the simplest reading
}
RHYTHM_HELP = ("Rhythms the score may write: 'fine' (default) writes 16ths, and 8th or 16th triplets and 32nds "
               "in the beats where they are played; '16ths' rounds everything to 16ths.")
