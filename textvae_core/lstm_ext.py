"""The compiled CPU kernels (lstm_ext.cpp), built once per machine: the LayerNorm LSTM
recurrence, and ByteNet's highway epilogue (LayerNorm, gate and carry of each masked conv).

`ops()` returns torch.ops.vaestudy_lnlstm once the C++ extension is built and loaded, or
None: with VAESTUDY_LSTM_EXT=0, on a machine without a C++ compiler, or if the build fails.
Then the LayerNorm cell runs its Python loop and ByteNet its torch ops, and one log line
says why. On Linux the loops split rows between torch's threads (OpenMP, the runtime torch
itself loaded: the library links libgomp by the same name); a compiler without OpenMP gets a
single-threaded build instead, once per machine, and one log line.

The build goes through torch.utils.cpp_extension into its cache (TORCH_EXTENSIONS_DIR,
default ~/.cache/torch_extensions), keyed here by the source's content, the flags and
torch's installation, and locked while one process builds: the first process on a machine
builds it (~10-60 s), every later trial and Ray worker loads the cached library in
milliseconds. `vaestudy run` builds it on the driver before any trial starts; `python -m
textvae_core.lstm_ext` builds it ahead of time (infra's image does).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("lstm_ext.cpp")
ENV = "VAESTUDY_LSTM_EXT"

_lock = threading.Lock()
_state: dict = {}
_logged: set[str] = set()


def _flags() -> tuple[str, list[str]]:
    """The library's name and compiler flags for this CPU: the vector width torch's own
    kernels use here (AVX-512 or AVX2 with FMA; a separate cache entry for each), else
    the compiler's baseline for the architecture."""
    cap = torch.backends.cpu.get_cpu_capability()
    flags = ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
    if cap == "AVX512":
        avx512 = [
            "-mavx512f",
            "-mavx512dq",
            "-mavx512bw",
            "-mavx512vl",
            "-mprefer-vector-width=512",
        ]
        return "vaestudy_lnlstm_avx512", flags + ["-mavx2", "-mfma", *avx512]
    if cap == "AVX2":
        return "vaestudy_lnlstm_avx2", flags + ["-mavx2", "-mfma"]
    return "vaestudy_lnlstm", flags


def _openmp_wanted() -> bool:
    """Whether to build the loops' threads with OpenMP: where torch runs its own threads on
    OpenMP (Linux wheels; the library then uses the libgomp torch loaded). Elsewhere, or where
    that build fails, vectorisation pragmas only, and every loop runs in the calling thread."""
    return torch.backends.openmp.is_available() and sys.platform.startswith("linux")


def _ninja_on_path() -> None:
    """cpp_extension runs `ninja` from PATH; a virtualenv's own (the `ninja` wheel) is in
    the interpreter's bin folder, which a Ray worker's PATH may lack. (Two ninja versions that
    take turns on one build folder rebuild it each time, since their logs differ: keep one
    ninja on the PATH of every process that loads the extension.)"""
    if shutil.which("ninja") is None:
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


class BuildError(RuntimeError):
    """Why the extension could not be built here, in one line."""


def _build():
    from torch.utils import cpp_extension

    if not SOURCE.is_file():  # a copy of the package without it: a study's logged model
        raise BuildError(f"no {SOURCE.name} beside {Path(__file__).name}")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise BuildError(f"no C++ compiler: {compiler!r} not found")
    _ninja_on_path()
    start = time.perf_counter()
    name, flags = _flags()
    source = _cached_source()
    # One build folder per source and torch installation: the build's command holds torch's
    # include paths, so two virtualenvs sharing a folder would rebuild it in turn.
    where = f"{source.name} {Path(torch.__file__).parent}".encode()
    name += "_" + hashlib.sha1(where).hexdigest()[:12]
    # A compiler without OpenMP (clang with no libomp) fails that build once per machine: the
    # marker beside the source says so to every later process, which builds the serial loops.
    threaded = _openmp_wanted()
    no_openmp = source.with_name(
        f"{name}.no-openmp-{hashlib.sha1(compiler.encode()).hexdigest()[:8]}"
    )
    quiet = logging.getLogger(cpp_extension.__name__)  # its multi-line compiler warnings
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        if threaded and not no_openmp.exists():
            try:
                _load(name + "_omp", source, flags + ["-fopenmp"], ["-fopenmp"])
                _state["openmp"] = True
                return torch.ops.vaestudy_lnlstm, time.perf_counter() - start
            except Exception as exc:
                no_openmp.write_text(_compiler_said(exc) + "\n")
        try:
            _load(name, source, flags + ["-fopenmp-simd"], [])
        except Exception as exc:  # the compiler's output is long; its first words say what failed
            raise BuildError(f"the build failed: {_compiler_said(exc)} ...") from exc
    finally:
        quiet.setLevel(level)
    _state["openmp"] = False
    if threaded:
        _log_line_once(
            f"compiled CPU kernels built without OpenMP ({no_openmp.read_text().strip()}; "
            f"remove {no_openmp} to try again): its loops run in one thread"
        )
    return torch.ops.vaestudy_lnlstm, time.perf_counter() - start


def _load(name: str, source: Path, cflags: list[str], ldflags: list[str]) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load(
        name=name,
        sources=[str(source)],
        extra_cflags=cflags,
        extra_ldflags=ldflags,
        is_python_module=False,
    )


def _compiler_said(exc: Exception) -> str:
    """The compiler's own error line if its output has one (torch's message starts with the
    build's long command lines), else the message's first words."""
    for line in str(exc).splitlines():
        if "error:" in line.lower():
            return line.strip()[:160]
    return " ".join(str(exc).split())[:120]


def _cached_source() -> Path:
    """The source, copied into the extension cache under its content's hash: one build per
    torch installation for every copy of the same source (a checkout, a plain install into
    another folder, a Ray job's working directory). torch keys its build folder by name and
    ninja rebuilds whenever the source's path changes, so the build must not see where the
    package lies."""
    from torch.utils import cpp_extension

    text = SOURCE.read_bytes()
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()
    folder = Path(root) / "vaestudy_src"
    path = folder / f"lstm_ext_{hashlib.sha1(text).hexdigest()[:12]}.cpp"
    if not path.is_file() or path.read_bytes() != text:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(text)
        os.replace(tmp, path)  # atomic: a process building beside this one sees all or nothing
    return path


def ops():
    """torch.ops.vaestudy_lnlstm, or None when the Python loop must run (logged once).

    VAESTUDY_LSTM_EXT=0 is read on every call, so a process can switch paths; the build
    is tried once per process."""
    if os.environ.get(ENV, "1") == "0":
        _log_once(f"{ENV}=0")
        return None
    with _lock:
        if "ops" not in _state:
            try:
                _state["ops"], _state["seconds"] = _build()
            except Exception as exc:  # no compiler, no ninja, a failed build: fall back
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                _state["ops"], _state["why"] = None, why or type(exc).__name__
    if _state["ops"] is None:
        _log_once(_state["why"])
    return _state["ops"]


def _log_once(why: str) -> None:
    """One line, once per process, for why the torch-op paths run."""
    _log_line_once(
        f"compiled CPU kernels unavailable ({why}): the LayerNorm LSTM runs its Python loop, "
        "ByteNet's highway its torch ops"
    )


def _log_line_once(line: str) -> None:
    if line not in _logged:
        _logged.add(line)
        log.warning("%s", line)


def runs_on(t: torch.Tensor) -> bool:
    """Whether the compiled kernels take `t`: a float32 or float64 CPU tensor, where they
    are built (else the torch-op paths run, logged once)."""
    return (
        t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and ops() is not None
    )


def status() -> dict:
    """Which path the LayerNorm cell (and ByteNet's highway) takes here, why, how long
    loading it took, and whether its loops run on torch's threads (OpenMP)."""
    compiled = ops() is not None
    why = None
    if not compiled:
        why = f"{ENV}=0" if os.environ.get(ENV, "1") == "0" else _state["why"]
    return {
        "compiled": compiled,
        "why_not": why,
        "load_seconds": _state.get("seconds"),
        "openmp": _state.get("openmp") if compiled else None,
    }


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = status()
    done = s["why_not"]
    if s["compiled"]:
        threads = "threaded (OpenMP)" if s["openmp"] else "single-threaded loops"
        done = f"built and loaded in {s['load_seconds']:.1f} s, {threads}"
    print(f"compiled CPU kernels (LayerNorm LSTM, ByteNet highway): {done}")
    sys.exit(0 if s["compiled"] else 1)
