"""One way to reach a local directory or an `s3://` prefix, through fsspec.

S3 endpoints other than AWS (MinIO, moto) are taken from `AWS_ENDPOINT_URL`, the variable
botocore itself honours, so the same root string works in tests and on a cluster.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import fsspec
import numpy as np
from fsspec.core import url_to_fs


def filesystem(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem for `root` and the path inside it."""
    options: dict[str, Any] = {}
    if root.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        options["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    fs, path = url_to_fs(root, **options)
    return fs, path.rstrip("/")


def resolve_root(root: str) -> str:
    """Expand `${VAR}` and `~`; a variable left unset is an error that names it."""
    expanded = os.path.expanduser(os.path.expandvars(root))
    if "$" in expanded:
        raise FileNotFoundError(
            f"data root {root!r} refers to an unset environment variable; "
            "set it (e.g. HLP_DATA_ROOT=../shared/data) or pass data.root"
        )
    return expanded


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())


def read_npy(fs: fsspec.AbstractFileSystem, path: str) -> np.ndarray:
    with fs.open(path, "rb") as handle:
        return np.load(io.BytesIO(handle.read()), allow_pickle=False)


def write_npy(fs: fsspec.AbstractFileSystem, path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    with fs.open(path, "wb") as handle:
        handle.write(buffer.getvalue())


def write_json(fs: fsspec.AbstractFileSystem, path: str, payload: Any) -> None:
    with fs.open(path, "w") as handle:
        json.dump(payload, handle, indent=1)


def ray_storage(path: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray's RunConfig.

    Local paths become absolute (Ray workers do not share the driver's working directory). S3
    goes through s3fs wrapped for pyarrow, so a custom endpoint (MinIO, moto) works too; Ray
    then wants the path without its `s3://` prefix.
    """
    if not path.startswith("s3://"):
        return os.path.abspath(os.path.expanduser(path)), None
    import pyarrow.fs

    fs, bucket_path = filesystem(path)  # the same s3fs (and endpoint) the data root uses
    return bucket_path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def torch_load_refusal(exc: Exception) -> str | None:
    """Why `torch.load(weights_only=True)` refused a file, without torch's advice to load it with
    weights_only=False (or to allow-list its classes): that would run whatever code the file's
    pickled objects carry. None when the error is not such a refusal."""
    text = str(exc)
    refused = re.search(r"GLOBAL ([\w.]+)", text)  # the class or function torch refused
    if refused:
        return (f"not a safe model file: it holds a pickled Python object ({refused[1]}), which is never "
                f"loaded (loading it could run code); a model file holds only tensors, numbers and strings")
    if "weights_only" in text:  # torch's weights-only reader refused the bytes themselves
        return "not a PyTorch file of tensors, numbers and strings"
    return None


def human_bytes(count: int) -> str:
    """`53.5 MB (56,098,816 bytes)`: readable, and exact for a script that compares."""
    size, unit = float(count), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            break
        size /= 1024
    return f"{size:.1f} {unit} ({count:,} bytes)" if unit != "B" else f"{count} bytes"


def size_of(path: str) -> int:
    """Bytes under a local or `s3://` path (a file or a folder); 0 when nothing is there."""
    fs, inner = filesystem(path)
    if not fs.exists(inner):
        return 0
    return int(fs.du(inner, total=True)) if fs.isdir(inner) else int(fs.size(inner))


def remove(path: str) -> bool:
    """Delete a local or `s3://` folder or file if it is there; whether it was."""
    fs, inner = filesystem(path)
    if not fs.exists(inner):
        return False
    fs.rm(inner, recursive=True)
    return True


def kept_lines(places: dict[str, str]) -> list[str]:
    """`kept: <what> <where> <size>` for what a command leaves, the places that exist."""
    sizes = {what: (where, size_of(where)) for what, where in places.items()}
    return [f"kept: {what}: {where}, {human_bytes(size)}" for what, (where, size) in sizes.items() if size]
