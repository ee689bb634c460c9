"""Videos as frames: decoding that never crashes a run, facts about a file, and an encoder.

Decoding is PyAV's (``pip install av``: FFmpeg's libraries inside the wheel, so no
``ffmpeg``/``ffprobe`` on the system). Frames are numbered from 1 in the order the decoder
gives them (presentation order), which is what FiftyOne's frame numbers mean, also for a
variable frame rate. Every frame is decoded (inter-frame codecs need their references), but
only the sampled ones are converted to RGB: a skipped frame costs its decode, nothing more.
Seeking is not used: after a seek the decoder's count restarts at a keyframe whose frame
number only the timestamps tell, and timestamps do not give frame numbers under a variable
frame rate.

- :func:`video_info` -> :class:`VideoInfo` (frame rate, frame count, size, duration, codec)
- :func:`open_video` -> :class:`VideoReader`: ``frames(frame_step, keep)`` yields
  ``(frame_number, frame)``, the frame an RGB ``uint8`` tensor ``(H, W, 3)`` or, for a frame
  that failed to decode mid-stream, the reason (a string); ``reader.error`` then says why the
  stream ended early (truncated file), if it did
- :func:`iter_frames`: the same, opening and closing the file
- :func:`write_video`: frames to a file (tests, the demo, benchmarks)

Unreadable files raise :class:`VideoError` whose text is the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable, Iterator, Optional, Tuple, Union

import numpy as np
import torch

try:  # PyAV is the optional "video" extra; everything else of the package works without it
    import av
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    av = None

Frame = Union[torch.Tensor, str]

#: a skipped run of frames that fail to decode longer than this ends the stream
MAX_BAD_PACKETS = 50


class VideoError(Exception):
    """A file could not be read as a video; ``str(e)`` is the reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    frame_rate: float  # average frames per second (0.0 when unknown)
    frame_count: int  # frames the container declares (0 when it does not say)
    width: int
    height: int
    duration: float  # seconds (0.0 when unknown)
    codec: str
    size_bytes: int
    variable_rate: bool = False  # the stream's average and base rates differ


def _require_av():
    if av is None:
        raise VideoError("PyAV is not installed: pip install 'fiftyone-dnniqa[video]' (or pip install av)")


def _check_file(path: str) -> None:
    if not path:
        raise VideoError("no filepath")
    if not os.path.exists(path):
        raise VideoError("missing file" if not os.path.islink(path) else "broken symlink")
    if not os.path.isfile(path):
        raise VideoError("not a regular file")
    if os.path.getsize(path) == 0:
        raise VideoError("empty file (0 bytes)")


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]


def _info(container, stream, path: str) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    count = int(stream.frames or 0)
    if not count and rate and duration:
        count = int(round(duration * float(rate)))
    base = stream.base_rate or stream.guessed_rate
    variable = bool(rate and base and abs(float(rate) - float(base)) > 1e-3 * float(base))
    return VideoInfo(frame_rate=float(rate) if rate else 0.0, frame_count=count,
                     width=int(stream.codec_context.width), height=int(stream.codec_context.height),
                     duration=duration, codec=stream.codec_context.name, size_bytes=os.path.getsize(path),
                     variable_rate=variable)


class VideoReader:
    """One open video (a context manager). ``info`` is read on opening; after
    :meth:`frames` has run, ``decoded`` is how many frames the stream gave and ``error``
    why it ended before the end of the file, if it did."""

    def __init__(self, path: str):
        _require_av()
        _check_file(path)
        self.path = path
        try:
            self.container = av.open(path)
        except Exception as e:  # av.error.* (InvalidDataError...), OSError
            raise VideoError(f"not a readable video ({_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError("no video stream (or a video stream without frames)")
        self.stream = self.container.streams.video[0]
        try:
            self.info = _info(self.container, self.stream, path)
        except Exception as e:
            self.container.close()
            raise VideoError(f"unreadable video stream ({_reason(e)})") from None
        self.decoded = 0
        self.error: Optional[str] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self) -> None:
        self.container.close()

    def frames(self, frame_step: int = 1,
               keep: Optional[Callable[[int], bool]] = None) -> Iterator[Tuple[int, Frame]]:
        """Yields ``(frame_number, frame)`` for frames 1, 1 + step, 1 + 2 step...; ``keep``
        (frame number -> bool) drops sampled frames nobody needs before their RGB
        conversion. A packet that fails to decode counts as one frame (one packet is one
        frame in MP4, MKV, WebM and AVI) and, when sampled, yields its reason; with B-frames
        that reason lands within the decoder's reordering delay (a few frames) of the
        broken frame, and later frames keep their numbers."""
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.decoded, self.error, bad_run = 0, None, 0

        def wanted(n):
            return (n - 1) % frame_step == 0 and (keep is None or keep(n))

        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                    bad_run = 0
                except Exception as e:  # av.error.InvalidDataError and kin: this packet only
                    bad_run += 1
                    self.decoded += 1
                    if wanted(self.decoded):
                        yield self.decoded, f"frame failed to decode ({_reason(e)})"
                    if bad_run > MAX_BAD_PACKETS:
                        self.error = f"stream ends in undecodable data after frame {self.decoded}"
                        return
                    continue
                for frame in frames:
                    self.decoded += 1
                    if wanted(self.decoded):
                        yield self.decoded, _rgb(frame)
        except Exception as e:  # demuxing failed: the file ends early or is cut
            self.error = f"truncated or corrupt after frame {self.decoded} ({_reason(e)})"
            return
        if self.decoded == 0:
            self.error = "no frames (the video stream is empty)"
        elif self.info.frame_count and self.decoded < self.info.frame_count and self.error is None:
            self.error = f"truncated: {self.decoded} of {self.info.frame_count} declared frames decoded"


def _rgb(frame) -> Frame:
    try:
        return torch.from_numpy(frame.to_ndarray(format="rgb24"))
    except Exception as e:
        return f"frame could not be converted to RGB ({_reason(e)})"


def open_video(path: str) -> VideoReader:
    """Opens ``path`` for decoding. Raises :class:`VideoError` (with the reason)."""
    return VideoReader(path)


def video_info(path: str) -> VideoInfo:
    """What ``path``'s container says about its video (no frame is decoded)."""
    with open_video(path) as reader:
        return reader.info


def iter_frames(path: str, frame_step: int = 1,
                keep: Optional[Callable[[int], bool]] = None) -> Iterator[Tuple[int, Frame]]:
    """:meth:`VideoReader.frames` of ``path``, opened and closed here."""
    with open_video(path) as reader:
        yield from reader.frames(frame_step, keep)


def write_video(path: str, frames: Iterable, fps: Union[float, Fraction] = 25, codec: str = "libx264",
                quality: Optional[int] = None, timestamps: Optional[Iterable[float]] = None,
                size: Optional[Tuple[int, int]] = None) -> int:
    """Encodes ``frames`` (RGB ``uint8`` ``(H, W, 3)`` arrays or tensors, all one even-sided
    size) into ``path`` at ``fps``; returns the number written. ``codec``: any encoder of
    the PyAV wheel (``libx264``, ``mpeg4``, ``libvpx``...). ``quality``: libx264's CRF
    (default 18, near lossless) or the qscale of the other codecs. ``timestamps`` (seconds,
    increasing) give each frame its own time: a variable frame rate. ``size`` ``(width,
    height)`` is needed only for a file without frames. MP4 files get their index first
    (``faststart``), so a truncated copy keeps its readable frames."""
    _require_av()
    rate = Fraction(fps).limit_denominator(1001)
    tick = Fraction(1, 90000) if timestamps is not None else 1 / rate
    times = iter(timestamps) if timestamps is not None else None
    options = {"movflags": "faststart"} if path.lower().endswith((".mp4", ".mov", ".m4v")) else {}
    n = 0
    with av.open(path, mode="w", options=options) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = tick
        if size is not None:
            stream.width, stream.height = size
        if codec == "libx264":
            stream.options = {"crf": str(18 if quality is None else quality), "preset": "veryfast"}
        elif quality is not None:
            stream.codec_context.qscale = quality
        for image in frames:
            array = image.numpy() if torch.is_tensor(image) else np.asarray(image)
            if n == 0:
                stream.width, stream.height = array.shape[1], array.shape[0]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array, dtype=np.uint8), format="rgb24")
            frame.pts = int(round(next(times) / tick)) if times is not None else n
            frame.time_base = tick
            out.mux(stream.encode(frame))
            n += 1
        if n == 0:
            out.start_encoding()  # a header and an empty stream: a file without frames
        out.mux(stream.encode(None))
    return n
