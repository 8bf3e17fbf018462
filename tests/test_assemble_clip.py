"""assemble_clip end to end: API → Temporal → cpu_intensive worker → one MP4 served by the API, decoded."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pyloudnorm

from activities.audio import files as audio_io
from activities.media.video import encode_mp4, probe_video
from tests.support.audio import band_envelope_db, serve_audio, tone
from tests.support.file_server import StaticFileServer
from tests.support.tasks import submit, wait_status

FPS = 24
RATE = 48_000


def _h264_video(path: Path, seconds: float) -> bytes:
    """A small H.264 MP4 made with the service's own encoder (what generate_video writes)."""
    count = round(seconds * FPS)
    frames = np.random.default_rng(7).integers(0, 255, (count, 48, 64, 3), dtype=np.uint8)
    encode_mp4([frames], path, FPS, frame_count=count)
    return path.read_bytes()


def _mpeg4_video(path: Path, seconds: float) -> bytes:
    """A small MPEG-4 Part 2 video in Matroska: a codec the task must encode to H.264 rather than copy."""
    audio_io.run_ffmpeg(
        ["-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}", "-t", str(seconds), "-c:v", "mpeg4"]
        + ["-f", "matroska", str(path)]
    )
    return path.read_bytes()


def _streams(path: Path) -> str:
    """The stream lines `ffmpeg -i` prints (imageio-ffmpeg ships no ffprobe)."""
    done = subprocess.run(
        [audio_io.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, check=False
    )
    return "\n".join(re.findall(r"Stream #.*", done.stderr.decode("utf-8", "replace")))


async def _fetch_result(api: httpx.AsyncClient, url: str, path: Path) -> Path:
    response = await api.get(url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("video/mp4")
    path.write_bytes(response.content)
    return path


async def test_tracks_are_placed_at_their_offsets_on_the_video(
    api: httpx.AsyncClient, file_server: StaticFileServer, tmp_path: Path
) -> None:
    video = file_server.add(_h264_video(tmp_path / "shot.mp4", 2.0), "video/mp4", name="shot.mp4")
    line = serve_audio(file_server, tone(440, 0.6, 22050), 22050, "wav", tmp_path)
    # Runs past the picture's end: it is cut there.
    bed = serve_audio(file_server, tone(2000, 3.0, 44100, 0.2), 44100, "wav", tmp_path)
    task_id = await submit(
        api,
        "assemble_clip",
        {
            "video": video,
            "tracks": [
                {"url": line, "offset_s": 0.5, "fade_in_s": 0.02, "fade_out_s": 0.02},
                {"url": bed, "offset_s": 1.2},
            ],
        },
    )
    status = await wait_status(api, task_id, "completed", timeout=120)
    meta = status["result"]["metadata"]
    out = await _fetch_result(api, status["result"]["media_url"], tmp_path / "out.mp4")
    picture = probe_video(out)
    assert picture.codec == "h264" and (picture.width, picture.height) == (64, 48)
    assert picture.frame_count == 48 and abs(picture.duration - 2.0) <= 1 / FPS
    assert "Audio: aac" in _streams(out) and "Video: h264" in _streams(out)
    assert meta["video_codec"] == "h264" and meta["audio_codec"] == "aac" and meta["frames"] == 48
    assert abs(meta["duration"] - 2.0) <= 1 / FPS and meta["file_size"] == out.stat().st_size
    assert meta["provenance"]["video"] == "copied" and len(meta["provenance"]["input_hashes"]) == 3
    assert meta["loudness_target_lufs"] is None and meta["integrated_loudness_lufs"] < -10
    sound = audio_io.decode_file(out, RATE, 1, max_seconds=5)
    assert abs(len(sound) / RATE - 2.0) <= 1 / FPS
    # Levels per 10 ms: silence before each track's offset, its tone after it.
    low = band_envelope_db(sound, RATE, 300, 600)
    high = band_envelope_db(sound, RATE, 1500, 2500)
    assert low[:48].max() < -60 and low[52:108].min() > -25, low
    assert high[:118].max() < -60 and high[122:199].min() > -25, high


async def test_loudness_is_normalised_other_codecs_encoded_and_the_clip_reused(
    api: httpx.AsyncClient, file_server: StaticFileServer, tmp_path: Path
) -> None:
    video = file_server.add(_mpeg4_video(tmp_path / "shot.mkv", 1.5), "video/x-matroska", name="shot.mkv")
    quiet = serve_audio(file_server, tone(330, 1.5, 44100, 0.05), 44100, "wav", tmp_path)
    task_data = {"video": video, "tracks": [{"url": quiet}], "loudness_lufs": -16}
    status = await wait_status(api, await submit(api, "assemble_clip", task_data), "completed", timeout=120)
    assert status["result"]["cache"]["hit"] is False
    meta = status["result"]["metadata"]
    out = await _fetch_result(api, status["result"]["media_url"], tmp_path / "out.mp4")
    assert probe_video(out).codec == "h264" and "Audio: aac" in _streams(out)
    assert meta["provenance"]["video"] == "encoded from mpeg4" and abs(meta["duration"] - 1.5) <= 1 / FPS
    sound = audio_io.decode_file(out, RATE, 1, max_seconds=5)
    measured = pyloudnorm.Meter(RATE).integrated_loudness(sound[:, 0].astype(np.float64))
    assert abs(measured + 16) <= 1.0, measured
    assert abs(meta["integrated_loudness_lufs"] + 16) <= 1.0 and meta["loudness_target_lufs"] == -16
    assert meta["true_peak_dbtp"] <= -0.9
    # Deterministic given its inputs: `cache: auto` (the default) answers the same request from the first.
    again = await wait_status(api, await submit(api, "assemble_clip", task_data), "completed", timeout=60)
    assert again["result"]["cache"]["hit"] is True
    assert again["result"]["cache"]["key"] == status["result"]["cache"]["key"]


async def test_bad_inputs_fail_at_once_with_a_clear_error(
    api: httpx.AsyncClient, file_server: StaticFileServer, tmp_path: Path
) -> None:
    track = serve_audio(file_server, tone(440, 0.5, 22050), 22050, "wav", tmp_path)
    video = file_server.add(_h264_video(tmp_path / "shot.mp4", 1.0), "video/mp4", name="shot.mp4")
    cases = {
        "not found (HTTP 404)": {"video": file_server.url("/missing.mp4"), "tracks": [{"url": track}]},
        "has content type 'text/html'": {
            "video": file_server.add(b"<html></html>", "text/html", name="page.html"),
            "tracks": [{"url": track}],
        },
        "has no video stream ffmpeg can read": {
            "video": file_server.add(b"not a video at all", "video/mp4", name="broken.mp4"),
            "tracks": [{"url": track}],
        },
        "starts at 1.5 s, at or after the video's end": {
            "video": video,
            "tracks": [{"url": track}, {"url": track, "offset_s": 1.5}],
        },
    }
    task_ids = {expected: await submit(api, "assemble_clip", data) for expected, data in cases.items()}
    statuses = await asyncio.gather(*(wait_status(api, t, "failed", timeout=60) for t in task_ids.values()))
    for expected, status in zip(task_ids, statuses, strict=True):
        assert status["error"].startswith("InvalidInput:") and expected in status["error"], status["error"]
        assert status["attempt"] == 1


async def test_invalid_task_data_is_refused_before_anything_starts(
    api: httpx.AsyncClient, file_server: StaticFileServer
) -> None:
    video, track = file_server.url("/shot.mp4"), file_server.url("/line.wav")
    cases = [
        ({"video": video, "tracks": [{"url": track, "offset_s": -1}]}, "task_data.tracks.0.offset_s"),
        ({"tracks": [{"url": track}]}, "task_data.video"),
        ({"video": video, "tracks": []}, "task_data.tracks"),
        ({"video": video, "tracks": [{"url": track}], "loudness_lufs": 0}, "task_data.loudness_lufs"),
        # Above MAX_AUDIO_MIX_S (3600 s): the media budget of the mix, as for process_audio.
        (
            {"video": video, "tracks": [{"url": track, "offset_s": 3000, "trim": {"end_s": 1000}}]},
            "task_data.tracks.0.offset_s",
        ),
    ]
    for task_data, field in cases:
        response = await api.post(
            "/api/v1/tasks/submit",
            json={"project_id": "proj_test", "task_type": "assemble_clip", "task_data": task_data},
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "validation_error" and field in body["details"], body
