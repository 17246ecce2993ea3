"""Bytes from strangers: every parser of a file a user hands the explorer lives here, and callers get typed
results (numpy arrays, plain values, small dataclasses), never a parser's own objects.

Everything a user can hand the explorer (model files, dataset uploads) passes through here before anything
could be made to allocate, unpack or run something:

- ``files``: ``sniff`` names a file's format from its magic bytes (never from its name); ``read_bounded``
  reads a file or takes bytes, refusing anything over one size limit;
- ``archive``: ``open_zip`` checks a zip archive's directory (entries, unpacked size, compression ratio)
  before any member is unpacked, and ``member_path`` refuses paths that climb out of it;
- ``safetensors_file``: the header (sizes, dtypes, offsets) validated before any tensor exists, and the JSON
  document a checkpoint keeps in its metadata;
- ``npy``: .npy headers (dtype, shape) checked against the member before the array is read, never unpickled;
- ``images``: PNG/JPEG decoding under a pixel bound read from the header (PIL's bomb warning is a refusal);
- ``idx``: IDX (MNIST) files, plain or gzip, read in bounded chunks;
- ``keras`` and ``keras_graph``: a ``.keras`` archive's ``config.json`` read as data into the chain of layers
  and their specs, and its ``model.weights.h5`` handed to the limited child;
- ``sandbox`` runs ``child.py`` (and ``child_onnx.py``), the limited process for the parsers that are native
  or pickle-based (``torch.load(weights_only=True)``, HDF5, protobuf and onnxruntime).

Every refusal is a ``CheckpointError`` or a ``DatasetError`` (the caller chooses where both could be) with a
message that says what to do. The names most callers need are re-exported here.
"""

from explorer.untrusted.archive import (
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    member_path,
    open_member,
    open_zip,
    read_member,
    zip_entries,
    zip_names,
)
from explorer.untrusted.files import (
    MAX_FILE_BYTES,
    Source,
    check_size,
    human_size,
    max_upload_bytes,
    read_bounded,
    sniff,
)
from explorer.untrusted.safetensors_file import (
    DTYPE_BYTES,
    MAX_HEADER_BYTES,
    SafetensorsHeader,
    TensorEntry,
    load_safetensors,
    read_document,
    read_header,
    safetensors_header,
)

__all__ = [
    "DTYPE_BYTES",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_ZIP_MEMBERS",
    "MAX_ZIP_RATIO",
    "SafetensorsHeader",
    "Source",
    "TensorEntry",
    "check_size",
    "human_size",
    "load_safetensors",
    "max_upload_bytes",
    "member_path",
    "open_member",
    "open_zip",
    "read_bounded",
    "read_document",
    "read_header",
    "read_member",
    "safetensors_header",
    "sniff",
    "zip_entries",
    "zip_names",
]
