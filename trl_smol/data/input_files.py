"""Local data files checked before `datasets` reads them: one error naming the file, the line and what to do.

`datasets` reports an empty JSON-lines file as a bare `StopIteration`, a file that is not UTF-8 as pyarrow's
`UnicodeDecodeError`, and a bad line as "An error occurred while generating the dataset"; none of them names the file.
[`check_data_file`] raises [`DataFileError`] instead, naming the file (and the line), for a file that is empty, not
UTF-8, not JSON lines, or without the columns the run trains on. It reads at most the first MiB of a file (the
parquet footer for parquet); `datasets` still reads the whole file when the run loads it.

```python
from trl_smol.data.input_files import check_data_file, check_dataset_files

check_data_file("data/train.jsonl", columns=("messages",))          # the columns: at least one of them
check_dataset_files("json", data_files="data/train.jsonl")         # the files `load_dataset` would read
```

A path that does not exist is one error saying where it was looked for: paths in a recipe resolve against the working
directory, not the recipe's folder. A hub dataset that is neither cached nor reachable is one error naming it and the
offline fix ([`trl_smol.hub`]), within seconds.

In `trl sft`, [`check_local_data_files`] checks the files of `--dataset_name` (a local directory) and of every
`datasets:` entry once the recipe is parsed, before anything is loaded; the plugin's `get_dataset` checks the mixture's
files again for Python callers.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..hub import check_hub_repo, missing_path_message

PREFIX_BYTES = 1 << 20  # how much of a text file is decoded and parsed
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".txt": "text"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".tar", ".7z")
# Modules `datasets.load_dataset` reads local `data_files` with (`path: json` in a `datasets:` entry).
_FILE_BUILDERS = ("json", "csv", "parquet", "text", "arrow", "pandas")


class DataFileError(ValueError):
    """A data file of the run cannot be read as training data; the message names the file and what to do."""


def trainable_columns(training_args: Any = None) -> tuple[str, ...]:
    """Columns `trl sft` can train from: `messages` first (conversations), then what TRL also reads."""
    if training_args is None:
        return ()
    text = getattr(training_args, "dataset_text_field", None) or "text"
    return tuple(dict.fromkeys(("messages", "conversations", "prompt", text, "input_ids")))


def check_data_file(
    path: str,
    data_format: str | None = None,
    *,
    columns: Sequence[str] = (),
    sep: str = ",",
    json_field: str | None = None,
) -> None:
    """Raise [`DataFileError`] when `path` is empty, not UTF-8, not JSON lines, or has none of `columns`.

    `data_format` is `json`, `csv`, `parquet`, `text` or another `datasets` module (only emptiness is checked then);
    `None` takes it from the extension. `columns`: the file needs at least one of them (empty: no column check).
    """
    data_format = data_format or _FORMATS.get(os.path.splitext(path)[1].lower())
    if os.path.getsize(path) == 0:
        raise DataFileError(f"Data file {path} is empty (0 bytes). Write the data into it, or remove it from the run.")
    if path.lower().endswith(_COMPRESSED):
        return  # `datasets` decompresses it; its content cannot be read here without doing the same
    found: list[str] | None = None
    if data_format == "json":
        found = _json_columns(path, json_field)
    elif data_format == "csv":
        found = _csv_columns(path, "\t" if path.lower().endswith(".tsv") and sep == "," else sep)
    elif data_format == "parquet":
        found = _parquet_columns(path)
    elif data_format == "text":
        text, whole = _read_text(path)
        if whole and not text.strip():
            raise DataFileError(f"Data file {path} has no data: only blank lines. Write the data in it, or remove it.")
        found = ["text"]
    if found is not None and columns and not set(columns) & set(found):
        wanted = f"conversations in a `{columns[0]}` column"
        others = [f"`{name}`" for name in columns[1:]]
        if others:
            wanted += f" (or {others[0]})" if len(others) == 1 else f" (or one of {', '.join(others)})"
        raise DataFileError(
            f"Data file {path} has no `{columns[0]}` column; its columns are {', '.join(found) or 'none'}. The run "
            f"trains on {wanted}: rename the column in the file, or convert the data (one conversation per row, a "
            "list of {role, content} messages)."
        )


def _read_text(path: str) -> tuple[str, bool]:
    """The first `PREFIX_BYTES` of `path` as text (a UTF-8 BOM dropped), and whether that is the whole file."""
    with open(path, "rb") as file:
        data = file.read(PREFIX_BYTES)
        whole = not file.read(1)
    start = 3 if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data[start:], final=whole), whole
    except UnicodeDecodeError as error:
        offset = start + error.start
        line = data.count(b"\n", 0, offset) + 1
        hint = " It looks like UTF-16." if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else ""
        raise DataFileError(
            f"Data file {path} is not UTF-8 text: line {line} (byte {offset}) has the byte {data[offset]:#04x}, which "
            f"UTF-8 cannot decode.{hint} Save the file as UTF-8, e.g. `iconv -f <its encoding> -t UTF-8`."
        ) from None


def _json_columns(path: str, field: str | None) -> list[str] | None:
    text, whole = _read_text(path)
    if whole and not text.strip():
        raise DataFileError(f"Data file {path} has no data: only blank lines. Write one JSON object per line.")
    if field is not None or text.lstrip().startswith("["):
        return _json_document_columns(path, text, field) if whole else None  # one JSON document: all of it or nothing
    lines = text.split("\n")  # not splitlines(): JSON strings may hold U+2028 and other line breaks
    if not whole:
        lines = lines[:-1]  # the prefix may end inside a line
    keys: dict[str, None] = {}
    first = True  # no line parsed yet
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            if first and text.lstrip().startswith("{"):  # maybe one pretty-printed object, which `datasets` reads too
                if not whole:
                    return None
                try:
                    return _json_document_columns(path, text, field)
                except DataFileError:
                    pass  # neither one document nor JSON lines: report the line
            raise DataFileError(
                f"Data file {path}, line {number} is not JSON ({error.msg} at column {error.colno}): "
                f"{line.strip()[:80]!r}. A JSON-lines file holds one JSON object per line: fix or remove that line."
            ) from None
        if not isinstance(value, dict):
            raise DataFileError(
                f"Data file {path}, line {number} is a JSON {type(value).__name__}, not an object: "
                f"{line.strip()[:80]!r}. A JSON-lines file holds one JSON object per line, e.g. "
                '{"messages": [{"role": "user", "content": "..."}, ...]}.'
            )
        keys.update(dict.fromkeys(value))
        first = False
    return None if first else list(keys)  # no complete line in the prefix: columns unknown


def _json_document_columns(path: str, text: str, field: str | None) -> list[str] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataFileError(
            f"Data file {path} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. Fix the "
            "file, or write it as JSON lines (one object per line)."
        ) from None
    if field is not None:
        value = value.get(field) if isinstance(value, dict) else None
    if isinstance(value, list):
        return list(dict.fromkeys(key for row in value if isinstance(row, dict) for key in row))
    return list(value) if isinstance(value, dict) else None


def _csv_columns(path: str, sep: str) -> list[str] | None:
    text, whole = _read_text(path)
    if whole and not text.strip():
        raise DataFileError(f"Data file {path} has no data: only blank lines. Write a header line and rows.")
    first_line, newline, rest = text.lstrip("\r\n").partition("\n")
    if not whole and not newline:
        return None  # a header longer than the prefix
    header = next(csv.reader([first_line], delimiter=sep), [])
    if whole and not rest.strip():
        raise DataFileError(
            f"Data file {path} has a header line ({', '.join(header)}) but no rows. Add the rows, or remove it."
        )
    return [name.strip() for name in header]


def _parquet_columns(path: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... for a file it cannot read
        raise DataFileError(
            f"Data file {path} is not a readable parquet file ({error}). Write it again (e.g. with "
            "`Dataset.to_parquet`), or point the run to the right file."
        ) from None
    if metadata.num_rows == 0:
        raise DataFileError(f"Data file {path} has no rows. Write the data into it, or remove it from the run.")
    return list(metadata.schema.to_arrow_schema().names)


def _is_local(path: str, data_dir: str | None, data_files: Any) -> bool:
    """Whether `load_dataset` reads local files: a local path, or a file module (`json`, ...) on local files."""
    if os.path.exists(path):
        return True
    if path not in _FILE_BUILDERS or (data_files is None and data_dir is None):
        return False
    values = data_files.values() if isinstance(data_files, dict) else [data_files]
    patterns = [p for value in values for p in (value if isinstance(value, (list, tuple)) else [value])]
    return not any("://" in str(pattern) for pattern in patterns)  # `hf://...`, `https://...`: remote files


def check_dataset_files(
    path: str,
    name: str | None = None,
    *,
    data_dir: str | None = None,
    data_files: Any = None,
    columns: Sequence[str] = (),
    key: str = "path",
) -> None:
    """Check every local file `datasets.load_dataset(path, name, data_dir=..., data_files=...)` would read.

    A `data_dir` or `data_files` path that does not exist is an error saying where it was looked for (paths resolve
    against the working directory). A hub dataset is checked with [`trl_smol.hub.check_hub_repo`] (cached, or known to
    the Hub, within seconds); remote files are left to `datasets`. The files and their format are resolved by
    `datasets.load_dataset_builder`, as the load resolves them (all splits: the load reads them all). `key` names the
    setting in the messages (`dataset_name`, or `path` of a `datasets:` entry).
    """
    if not _is_local(path, data_dir, data_files):
        if path not in _FILE_BUILDERS:  # a hub dataset, or a local path that is not there
            check_hub_repo(path, "dataset", setting=key)
        return
    _check_paths_exist(path if os.path.isdir(path) else "", data_dir, data_files)
    if os.path.isfile(path):
        check_data_file(path, columns=columns)
        kind = _FORMATS.get(os.path.splitext(path)[1].lower(), "json")
        raise DataFileError(
            f"`{key}: {path}` is a file, but `datasets.load_dataset` (which `trl sft` calls) reads a directory or a "
            f"hub dataset, not one file. Give its directory instead, or a `datasets:` entry in the recipe: "
            f"`datasets: [{{path: {kind}, data_files: {path}}}]`."
        )
    from datasets import load_dataset_builder

    try:
        builder = load_dataset_builder(path, name, data_dir=data_dir, data_files=data_files)
    except Exception:  # noqa: BLE001 - a missing file, an empty directory: the load reports it, naming the path
        return
    config = builder.config
    sep = getattr(config, "delimiter", None) or getattr(config, "sep", None) or ","
    for files in (config.data_files or {}).values():
        for file in files:
            if isinstance(file, str) and os.path.isfile(file):
                check_data_file(
                    file, builder.name, columns=columns, sep=sep, json_field=getattr(config, "field", None)
                )


def _check_paths_exist(base: str, data_dir: str | None, data_files: Any) -> None:
    """A `data_dir` or `data_files` entry that names no existing file is one error saying where it was looked for.
    `base`: the dataset's local directory, which `datasets` resolves them against ("" for a file module)."""
    import glob

    folder = os.path.join(base, data_dir) if data_dir else base
    values = data_files.values() if isinstance(data_files, dict) else [data_files]
    patterns = [p for value in values for p in (value if isinstance(value, (list, tuple)) else [value]) if p]
    checks = [("data_dir", folder)] if data_dir else []
    checks += [("data_files", os.path.join(folder, str(pattern))) for pattern in patterns]
    for setting, pattern in checks:
        if glob.has_magic(pattern):
            if not glob.glob(pattern, recursive=True):
                raise DataFileError(
                    f"{missing_path_message(setting, pattern).replace('does not exist', 'matches no file')}. Fix the "
                    "pattern, or run from the folder it is relative to."
                )
        elif not os.path.exists(pattern):
            raise DataFileError(
                f"{missing_path_message(setting, pattern)}. Fix the path, or run from the folder it is relative to."
            )


def check_mixture_files(entries: Iterable[Any], columns: Sequence[str] = ()) -> None:
    """[`check_dataset_files`] for every entry of a `datasets:` mixture (`DatasetConfig` objects).

    An entry that keeps a `messages` column (`columns: [messages, ...]`) needs it in every file; otherwise each file
    needs one of `columns`.
    """
    for entry in entries:
        needed = ("messages",) if "messages" in (entry.columns or ()) else columns
        check_dataset_files(
            entry.path, entry.name, data_dir=entry.data_dir, data_files=entry.data_files, columns=needed
        )


def check_local_data_files(script_args: Any, dataset_args: Any, training_args: Any = None) -> None:
    """Check the local files a `trl sft` run will load: the `datasets:` mixture, or else `dataset_name`.

    With `training_args`, every file needs one of the columns the run trains on ([`trainable_columns`]).
    """
    columns = trainable_columns(training_args)
    entries = getattr(dataset_args, "datasets", None) if dataset_args is not None else None
    if entries:
        check_mixture_files(entries, columns)
    elif script_args is not None and getattr(script_args, "dataset_name", None):
        check_dataset_files(script_args.dataset_name, script_args.dataset_config, columns=columns, key="dataset_name")
