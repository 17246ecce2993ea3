"""Parquet files with an image column: one file, a folder of them, or a glob, read a row group at a time.

The image column is found by its type unless named: a struct with a ``bytes`` field (and ``path``, the layout
Hugging Face ``datasets`` writes), or plain binary. The label column, optional, is named or found among
``label``, ``labels``, ``class``, ``target``: integers (class names from the ``datasets`` metadata when it
has them) or strings (each distinct string a class, sorted). Opening reads the files' footers and the label
column; reading images reads only the row groups that hold the rows asked for, and only the image column.
pyarrow is imported inside the functions that use it: importing ``explorer.data`` stays cheap.
"""

from __future__ import annotations

import json

import numpy as np

from explorer.data.lazy import FileSource, class_index, expand, fingerprint, names_files
from explorer.data.source import SourceKind, register
from explorer.errors import DatasetError
from explorer.untrusted.images import read_image

SUFFIXES = (".parquet", ".pq")
LABEL_NAMES = ("label", "labels", "class", "target")
MAX_IMAGE_BYTES = 64 * 2**20


def _image_column(schema, named: str | None, label: str) -> tuple[str, bool]:
    """(column, whether it is a struct of bytes and path)."""
    import pyarrow as pa

    def kind(field) -> str | None:
        t = field.type
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
            return "struct"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            return "binary"
        return None

    if named is not None:
        if named not in schema.names:
            raise DatasetError(f"{label}: no column {named!r}; its columns are {', '.join(schema.names)}")
        if (found := kind(schema.field(named))) is None:
            raise DatasetError(f"{label}: column {named!r} is {schema.field(named).type}, not image bytes")
        return named, found == "struct"
    for field in schema:
        if (found := kind(field)) is not None:
            return field.name, found == "struct"
    raise DatasetError(
        f"{label}: no image column (a struct of bytes and path, or binary) among {', '.join(schema.names)}; "
        "name it with image_column"
    )


def _hf_class_names(schema, column: str) -> list[str] | None:
    """The names of a ``datasets`` ClassLabel column, from the metadata it writes into the file."""
    try:
        meta = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        feature = meta["info"]["features"][column]
        names = feature.get("names") if feature.get("_type") == "ClassLabel" else None
        return [str(n) for n in names] if isinstance(names, list) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class ParquetSource(FileSource):
    def __init__(
        self, name: str, location: str, *, image_column: str | None = None, label_column: str | None = None
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.name = name
        self.paths = expand(location, SUFFIXES, label=name)
        try:
            schema = pq.read_schema(self.paths[0])
            metas = [pq.read_metadata(p) for p in self.paths]
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{name}: cannot read the Parquet files at {location!r} ({exc})") from None
        self.column, self.struct = _image_column(schema, image_column, name)
        # global row -> (file, row group, row within it), through the row counts of the footers
        groups = [[meta.row_group(g).num_rows for g in range(meta.num_row_groups)] for meta in metas]
        self._group_start = np.cumsum([0] + [n for file in groups for n in file])  # (G + 1,)
        self._group_of = [(f, g) for f, file in enumerate(groups) for g in range(len(file))]
        self._labels, self._class_names = self._read_labels(schema, label_column, label_column is not None)
        self._labels.setflags(write=False)
        self.digest = fingerprint("parquet/1", self.paths, self.column, label_column)

    def _read_labels(self, schema, column: str | None, named: bool) -> tuple[np.ndarray, list[str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = int(self._group_start[-1])
        if column is None:
            column = next((c for c in LABEL_NAMES if c in schema.names), None)
        if column is None:
            return np.full(n, -1, dtype=np.int64), []
        if column not in schema.names:
            raise DatasetError(f"{self.name}: no column {column!r}; its columns are {', '.join(schema.names)}")
        try:
            parts = [pq.read_table(p, columns=[column]).column(0) for p in self.paths]
            values = pa.chunked_array([c for part in parts for c in part.chunks], type=parts[0].type)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"{self.name}: cannot read the label column {column!r} ({exc})") from None
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if pa.types.is_integer(values.type):
            labels = values.fill_null(-1).to_numpy().astype(np.int64)
            labels[labels < 0] = -1
            top = int(labels.max(initial=-1))
            names = _hf_class_names(schema, column)
            if names is None or len(names) <= top:
                names = [str(k) for k in range(top + 1)] if top < 10_000 else []
            return labels, names
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            text = values.to_pylist()
            names, number = class_index([t for t in text if t is not None])
            return np.array([-1 if t is None else number[t] for t in text], dtype=np.int64), names
        if named:
            raise DatasetError(f"{self.name}: label column {column!r} is {values.type}, neither integers nor text")
        return np.full(n, -1, dtype=np.int64), []

    def __len__(self) -> int:
        return int(self._group_start[-1])

    def _locate(self, i: int) -> tuple[int, int, int]:
        group = int(np.searchsorted(self._group_start, i, side="right")) - 1
        f, g = self._group_of[group]
        return f, g, i - int(self._group_start[group])

    def where(self, i: int) -> str:
        f, g, row = self._locate(i)
        return f"{self.paths[f].name} row group {g} row {row}"

    def _load(self, index: np.ndarray) -> list[np.ndarray | str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        out: list[np.ndarray | str] = [""] * len(index)
        wanted: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (file, group) -> [(position, row)]
        for pos, i in enumerate(index.tolist()):
            f, g, row = self._locate(i)
            wanted.setdefault((f, g), []).append((pos, row))
        for f in sorted({f for f, _ in wanted}):
            try:
                file = pq.ParquetFile(self.paths[f])
            except (OSError, pa.ArrowException) as exc:
                for (ff, _), rows in wanted.items():
                    for pos, _ in rows if ff == f else ():
                        out[pos] = f"unreadable file ({exc})"
                continue
            with file:
                for (ff, g), rows in sorted(wanted.items()):
                    if ff != f:
                        continue
                    try:
                        cells = file.read_row_group(g, columns=[self.column]).column(0)
                        values = cells.take(pa.array([r for _, r in rows])).to_pylist()
                    except (OSError, pa.ArrowException) as exc:
                        values = [f"unreadable row group ({exc})"] * len(rows)
                    for (pos, _), value in zip(rows, values, strict=True):
                        out[pos] = value if isinstance(value, str) else self._decode(f, value)
        return out

    def _decode(self, f: int, value) -> np.ndarray | str:
        data, path = (value.get("bytes"), value.get("path")) if isinstance(value, dict) else (value, None)
        if data is None and path:
            data = self._beside(f, str(path))
            if isinstance(data, str):
                return data
        if not data:
            return "no image in this row"
        if len(data) > MAX_IMAGE_BYTES:
            return f"an image of {len(data) / 2**20:.0f} MB, more than {MAX_IMAGE_BYTES // 2**20} MB"
        try:
            return read_image(data)
        except DatasetError as exc:
            return str(exc)

    def _beside(self, f: int, path: str) -> bytes | str:
        """The bytes of an image a row names by path instead of holding: only a file in the Parquet file's own
        folder or below it is read."""
        folder = self.paths[f].parent.resolve()
        target = (folder / path).resolve()
        if not target.is_relative_to(folder) or not target.is_file():
            return f"its image {path!r} is not beside the Parquet file"
        if target.stat().st_size > MAX_IMAGE_BYTES:
            return f"its image {path!r} is larger than {MAX_IMAGE_BYTES // 2**20} MB"
        return target.read_bytes()


def _claims(location: str) -> bool:
    return names_files(location, SUFFIXES)


KIND = register(
    SourceKind(
        "parquet", "Parquet files with an image column", _claims, ParquetSource, ("image_column", "label_column")
    )
)
