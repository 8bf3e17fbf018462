"""Frames to H.264 MP4 with the ffmpeg binary of imageio-ffmpeg, frame-rate resampling, and read-back.

Resampling: video models produce clips at their own native rate (ModelScope/AnimateDiff: ~8 fps, 16
frames per clip). We generate ceil(duration × native_fps) native frames (in clips of at most the model's
native length), then build exactly round(duration × fps) output frames by linear blending: output frame j
sits at position p = j·(N−1)/(M−1) on the native timeline and is (1−f)·frame[⌊p⌋] + f·frame[⌊p⌋+1] with
f = p − ⌊p⌋. First and last frames are kept as they are, the clip spans the requested duration exactly,
and it costs one numpy pass (no motion estimation, unlike ffmpeg `minterpolate`, which is far slower and
smears on the noisy outputs of small models).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from activities.runtime import TaskInterrupted

Frames = npt.NDArray[np.uint8]  # (frames, height, width, 3) RGB
# Pixels of output frames blended at once on the way to the encoder (float32: ~100 MB per 8 M pixels).
CHUNK_PIXELS = 8 * 1024 * 1024


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def to_uint8_frames(frames: Any) -> Frames:
    """Pipeline output (float 0..1 numpy, PIL list or uint8) → uint8 (N, H, W, 3)."""
    if isinstance(frames, np.ndarray):
        array = frames
    else:
        array = np.stack([np.asarray(f) for f in frames])
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"expected (frames, height, width, 3) frames, got shape {array.shape}")
    return array


def decode_latent_frames(
    vae: Any,
    latents: Any,
    *,
    chunk_s: float,
    should_stop: Callable[[], bool],
    on_chunk: Callable[[int, int], None] | None = None,
) -> Frames:
    """The frames of a video pipeline's latents (batch, channels, frames, h, w), decoded by its VAE as the
    pipeline itself would (`decode_latents` + `postprocess_video`), a few frames at a time: each chunk is
    sized to take about `chunk_s` (the first is one frame, to time it), and a cancel is looked for between
    chunks, so a long decode stops within one chunk instead of running to its end."""
    import torch

    latents = latents / vae.config.scaling_factor
    batch, channels, count, height, width = latents.shape
    flat = latents.permute(0, 2, 1, 3, 4).reshape(batch * count, channels, height, width)
    total, done, size = flat.shape[0], 0, 1
    chunks: list[Frames] = []
    with torch.inference_mode():
        while done < total:
            if should_stop():
                raise TaskInterrupted("stopped while decoding")
            started = time.perf_counter()
            images = vae.decode(flat[done : done + size]).sample.float()
            # VaeImageProcessor.postprocess for `np`: denormalize to 0..1, channels last.
            chunks.append(to_uint8_frames((images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()))
            elapsed = max(time.perf_counter() - started, 1e-6)
            done += images.shape[0]
            size = max(1, int(chunk_s * images.shape[0] / elapsed))
            if on_chunk is not None:
                on_chunk(done, total)
    return np.concatenate(chunks)


def resample_frames(frames: Frames, target_count: int) -> Frames:
    """Exactly `target_count` frames spanning the same clip, by linear blending of neighbours (all at once:
    for short clips and tests; a video is encoded from `resampled_chunks`)."""
    if frames.shape[0] == target_count and target_count >= 1:
        return frames
    return np.concatenate(list(resampled_chunks(frames, target_count)))


def resampled_chunks(
    frames: Frames, target_count: int, *, chunk_pixels: int = CHUNK_PIXELS
) -> Iterator[Frames]:
    """The frames of `resample_frames`, a few at a time: at most `chunk_pixels` pixels of float32 blending
    are alive at once (at least one frame), so memory does not grow with the video's length."""
    source_count, height, width, _ = frames.shape
    if target_count < 1:
        raise ValueError("target_count must be at least 1")
    step = max(1, chunk_pixels // max(1, height * width))
    for start in range(0, target_count, step):
        stop = min(start + step, target_count)
        if source_count == target_count:
            yield frames[start:stop]
        elif source_count == 1 or target_count == 1:
            yield np.repeat(frames[:1], stop - start, axis=0)
        else:
            yield _blend(frames, np.arange(start, stop, dtype=np.float64), source_count, target_count)


def _blend(frames: Frames, indices: npt.NDArray[np.float64], source_count: int, target_count: int) -> Frames:
    """Output frames `indices` of `target_count`; output frame j sits at j·(N−1)/(M−1) on the native one."""
    positions = indices * (source_count - 1) / (target_count - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, source_count - 1)
    weight = (positions - lower).astype(np.float32)[:, None, None, None]
    blended = frames[lower].astype(np.float32) * (1.0 - weight) + frames[upper].astype(np.float32) * weight
    result: Frames = np.clip(blended.round(), 0, 255).astype(np.uint8)
    return result


def encode_mp4(
    chunks: Iterable[Frames],
    path: Path,
    fps: int,
    *,
    frame_count: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_frame: Callable[[int, int], None] | None = None,
) -> None:
    """H.264 (yuv420p, even dimensions) MP4 of `frame_count` frames, given chunk by chunk, at `fps`; stops
    promptly when `should_stop()`. Only the chunk being written is held here."""
    process: subprocess.Popen[bytes] | None = None
    written = 0
    try:
        for chunk in chunks:
            _, height, width, _ = chunk.shape
            # yuv420p subsamples chroma 2x2: odd sizes are rejected by libx264.
            chunk = chunk[:, : height - height % 2, : width - width % 2]
            if process is None:
                process = _start_encoder(path, fps, chunk.shape[2], chunk.shape[1])
            assert process.stdin is not None
            for frame in chunk:
                if should_stop():
                    raise TaskInterrupted("stopped while encoding")
                process.stdin.write(np.ascontiguousarray(frame).tobytes())
                written += 1
                if on_frame is not None:
                    on_frame(written, frame_count)
        if process is None:
            raise ValueError("no frames to encode")
        _finish_encoder(process)
    except BaseException:
        if process is not None:
            process.kill()
            process.wait()
        path.unlink(missing_ok=True)
        raise
    finally:
        if process is not None and process.stderr is not None:
            process.stderr.close()


def _start_encoder(path: Path, fps: int, width: int, height: int) -> subprocess.Popen[bytes]:
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel", "error",
        "-y",
        "-f", "rawvideo",
        "-pix_fmt", "rgb24",
        "-s", f"{width}x{height}",
        "-r", str(fps),
        "-i", "-",
        "-an",
        "-c:v", "libx264",
        "-preset", "veryfast",
        "-crf", "18",
        "-pix_fmt", "yuv420p",
        "-movflags", "+faststart",
        str(path),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish_encoder(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None and process.stderr is not None
    process.stdin.close()
    errors = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise RuntimeError(f"ffmpeg failed to encode the video: {errors.strip()[-500:]}")


@dataclass
class VideoInfo:
    width: int
    height: int
    frame_count: int
    duration: float
    fps: float
    codec: str


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #0:\d+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_FRAMES = re.compile(r"frame=\s*(\d+)")


def probe_video(path: Path) -> VideoInfo:
    """Decode the whole file with `ffmpeg -i FILE -map 0:v:0 -f null -` and read what it reports.

    Decoding (rather than trusting the container header) proves the file plays and counts real frames.
    """
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    output = result.stderr.replace("\r", "\n")
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg cannot decode {path.name}: {output.strip()[-500:]}")
    input_section = output.split("Stream mapping:", 1)[0]
    duration_match = _DURATION.search(input_section)
    stream_match = _STREAM.search(input_section)
    frames_matches = _FRAMES.findall(output)
    if not (duration_match and stream_match and frames_matches):
        raise RuntimeError(f"unexpected ffmpeg output for {path.name}: {output.strip()[-500:]}")
    stream_line = input_section[stream_match.start() :].split("\n", 1)[0]
    fps_match = _FPS.search(stream_line)
    hours, minutes, seconds = duration_match.groups()
    return VideoInfo(
        width=int(stream_match.group(2)),
        height=int(stream_match.group(3)),
        frame_count=int(frames_matches[-1]),
        duration=round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3),
        fps=float(fps_match.group(1)) if fps_match else 0.0,
        codec=stream_match.group(1),
    )


def split_clips(total: int, clip_length: int) -> Sequence[int]:
    """Lengths of consecutive clips covering `total` frames, none longer than `clip_length`.

    The remainder is spread evenly instead of leaving a tiny last clip (temporal layers need a few frames).
    """
    clips = max(1, -(-total // clip_length))
    base, extra = divmod(total, clips)
    return [base + (1 if i < extra else 0) for i in range(clips)]
