"""Video of evaluation episodes, and the choice of MuJoCo's OpenGL backend that rendering needs.

`FirstEpisodeVideo` records the first episode an evaluation environment runs (rendering reads the simulation
without changing it). MuJoCo picks its backend (`MUJOCO_GL`) once, when it is first imported, and a backend that
fails can abort the process later (glfw without a display): `choose_gl_backend` tries the candidates in child
processes first, and `settle_gl_backend` settles it for a run before anything imports mujoco.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

__all__ = ["FirstEpisodeVideo", "choose_gl_backend", "missing_gl_library", "settle_gl_backend"]


class FirstEpisodeVideo(gymnasium.Wrapper):
    """Renders every step of the first episode this environment runs and writes the frames to `path` at its end.

    Any rendering or writing error is kept (`video_result`), never raised: a video must not cost the evaluation.
    With `path` None the wrapper does nothing; every environment of a vector env carries one so that
    `envs.call("video_result")` reaches them all.
    """

    def __init__(self, env: gymnasium.Env, path: Path | None, error: str | None = None) -> None:
        super().__init__(env)
        self._path, self._error, self._written = path, error, None
        self._frames: list[np.ndarray] | None = [] if path is not None and error is None else None

    def reset(self, **kwargs: Any):
        result = self.env.reset(**kwargs)
        self._grab()
        return result

    def step(self, action):
        result = self.env.step(action)
        self._grab()
        if self._frames is not None and (result[2] or result[3]):  # terminated or truncated: the episode is over
            frames, self._frames = self._frames, None
            try:
                self._written = _write_video(frames, self._path, self.env.metadata.get("render_fps") or 30)
            except Exception as error:
                self._error = f"{type(error).__name__}: {error}"
        return result

    def _grab(self) -> None:
        if self._frames is None:
            return
        try:
            frame = self.env.render()
            if frame is None:
                raise RuntimeError("env.render() returned None: make_env ignored render_mode='rgb_array'")
            self._frames.append(np.asarray(frame))
        except Exception as error:
            self._frames, self._error = None, f"{type(error).__name__}: {error}"

    def video_result(self) -> tuple[str | None, str | None]:
        """(path written or None, error or None); (None, None) when this environment records nothing."""
        return (str(self._written) if self._written is not None else None), self._error


_GL_PROBE = """
import mujoco
model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><light pos='0 0 2'/><geom size='0.1'/></worldbody></mujoco>")
data = mujoco.MjData(model)
mujoco.mj_forward(model, data)
renderer = mujoco.Renderer(model, 16, 16)
renderer.update_scene(data)
assert renderer.render().shape == (16, 16, 3)
renderer.close()
"""


def _gl_candidates() -> list[str]:
    """The MUJOCO_GL values worth trying here, best first; only the given one if set or if mujoco is imported."""
    given = os.environ.get("MUJOCO_GL", "").strip().lower()
    if given or "mujoco" in sys.modules or not sys.platform.startswith("linux"):
        return [given]  # MuJoCo has read it already, or the user chose it, or the platform default is the one
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return (["glfw"] if display else []) + ["egl", "osmesa"]


def missing_gl_library(backend: str | None = None) -> str | None:
    """Why MUJOCO_GL=`backend` (default: the current setting) cannot work here, when that is plain without trying:
    "libOSMesa not found" (importing mujoco would fail), "libEGL not found"; else None."""
    backend = os.environ.get("MUJOCO_GL", "").strip().lower() if backend is None else backend
    library = {"egl": "EGL", "osmesa": "OSMesa"}.get(backend)
    if library and sys.platform.startswith("linux") and ctypes.util.find_library(library) is None:
        return f"lib{library} not found"
    return None


def _probe_gl(backend: str, timeout: float) -> str | None:
    """Render one frame with MUJOCO_GL=`backend` in a child process; None if it worked, else the reason."""
    missing = missing_gl_library(backend)
    if missing:
        return missing
    if backend == "glfw" and sys.platform.startswith("linux"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "no display (DISPLAY is not set)"
    env = {**os.environ, "MUJOCO_GL": backend} if backend else dict(os.environ)
    try:
        process = subprocess.run(
            [sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"no frame within {timeout:.0f} s"
    if process.returncode == 0:
        return None
    lines = [line.strip() for line in process.stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {process.returncode}"
    return reason if len(reason) <= 160 else reason[:157] + "..."


def choose_gl_backend(timeout: float = 60.0) -> tuple[str | None, str]:
    """Pick the OpenGL backend for MuJoCo video by rendering one frame in a child process per candidate.

    Tries `MUJOCO_GL` if it is set (or if mujoco is already imported, which fixes the backend), else, on Linux,
    glfw (only with a display), egl, then osmesa. The first that renders is put in `os.environ["MUJOCO_GL"]`, so
    this process and the environments it starts use it; call this before mujoco is imported.

    Returns:
        (backend, "") when one renders (backend "" meaning the platform default), else (None, why), with each
        candidate's error.
    """
    failures = []
    for backend in _gl_candidates():
        reason = _probe_gl(backend, timeout)
        if reason is None:
            if backend and "mujoco" not in sys.modules:
                os.environ["MUJOCO_GL"] = backend
            return backend, ""
        failures.append(f"MUJOCO_GL={backend or '(unset)'}: {reason}")
    return None, "; ".join(failures)


def _ffmpeg_available() -> bool:
    """Whether imageio can write mp4 (it needs the `imageio-ffmpeg` package, e.g. `pip install imageio[ffmpeg]`)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def _write_video(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """Write RGB frames (H, W, 3) uint8 to `path`; an mp4 path becomes a gif when no ffmpeg writer is installed."""
    import imageio.v3 as iio

    if path.suffix.lower() != ".gif" and not _ffmpeg_available():
        warnings.warn(
            f"no ffmpeg writer for {path.name} (pip install imageio[ffmpeg]); writing a gif instead", stacklevel=4
        )
        path = path.with_suffix(".gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    video = np.stack(frames)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, video, duration=1000.0 / fps, loop=0)
    else:
        # Blocks of 2 (not imageio's default 16, which resizes 200 x 200 frames with a warning): H.264's 4:2:0
        # chroma needs even sides only.
        iio.imwrite(path, video, plugin="FFMPEG", fps=fps, macro_block_size=2)
    return path


def settle_gl_backend(video: bool, name: str) -> bool:
    """Settle MuJoCo's OpenGL backend before anything imports mujoco: for `video` the first that renders (without
    one, go on without video: returns False); otherwise only drop a MUJOCO_GL whose library is missing. `name`
    prefixes the line printed.

    When no backend can work, MUJOCO_GL becomes "disable" for this process: importing mujoco (with OGBench) then
    neither fails (osmesa without libOSMesa) nor sets up a backend that aborts the process later.
    """
    if "mujoco" in sys.modules:
        return video
    if not video:
        missing = missing_gl_library()
        if missing:
            print(f"[{name}] MUJOCO_GL={os.environ['MUJOCO_GL']} ignored ({missing}); this run renders nothing")
            os.environ["MUJOCO_GL"] = "disable"
        return False
    backend, why = choose_gl_backend()
    if backend is not None:
        return True
    if os.environ.get("MUJOCO_GL"):
        hint = "unset MUJOCO_GL to let --video try glfw, egl and osmesa, or install the library it needs"
    else:
        hint = "install EGL (a GPU driver, or Mesa's libegl1) or OSMesa (libosmesa6)"
    os.environ["MUJOCO_GL"] = "disable"
    print(
        f"[{name}] --video off, going on without it: no OpenGL backend renders here ({why}); {hint}.",
        file=sys.stderr,
    )
    return False
