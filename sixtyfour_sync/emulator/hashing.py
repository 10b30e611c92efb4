"""Deterministic 64-bit hashing, vectorised over Arrow string arrays and as a scalar reference.

Both forms compute exactly the same numbers, so the vectorised output generator and the
pure-Python reference (used by tests to predict outputs) agree bit for bit:

- a string hashes as ``mix64(sum((byte_i + 1) * P**i) xor (len * L))`` modulo 2**64 over its
  UTF-8 bytes; NULL hashes to a fixed constant distinct from every string;
- ``mix64`` is the splitmix64 finaliser.

The vectorised form works on the Arrow offsets and data buffers with numpy, in row slices so
memory stays bounded whatever the file size; there is no per-row Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = [
    "MASK64",
    "NULL_HASH",
    "U64",
    "combine",
    "combine_vec",
    "hash_str",
    "hash_strings",
    "mix64",
    "mix64_vec",
    "row_hash",
    "row_hashes",
    "salted",
    "salted_vec",
]

U64 = npt.NDArray[np.uint64]

MASK64 = (1 << 64) - 1
_P = 0x100000001B3  # FNV prime: a good odd multiplier for a polynomial hash
_LEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
NULL_HASH = 0x6A09E667F3BCC909
# Rows per slice in the vectorised hash: bounds the temporary arrays (8 bytes per input byte).
_SLICE_ROWS = 65_536


def mix64(z: int) -> int:
    """splitmix64 finaliser on a Python int (modulo 2**64)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)


def mix64_vec(z: U64) -> U64:
    """splitmix64 finaliser over a uint64 array (numpy wraps on overflow, as the scalar masks)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(_M1)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(_M2)
    out: U64 = z ^ (z >> np.uint64(31))
    return out


def hash_str(value: str | None) -> int:
    """Hash one string (or NULL): the scalar reference of :func:`hash_strings`."""
    if value is None:
        return NULL_HASH
    data = value.encode("utf-8")
    total = 0
    power = 1
    for byte in data:
        total = (total + (byte + 1) * power) & MASK64
        power = (power * _P) & MASK64
    return mix64(total ^ ((len(data) * _LEN) & MASK64))


def _powers(n: int) -> U64:
    powers = np.full(max(n, 1), _P, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers, dtype=np.uint64)


def _hash_slice(arr: pa.Array) -> U64:
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    buffers = arr.buffers()
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[arr.offset : arr.offset + n + 1].astype(np.int64)
    starts, ends = offsets[:-1], offsets[1:]
    lengths = ends - starts
    first, last = int(offsets[0]), int(offsets[-1])
    if last > first and buffers[2] is not None:
        data = np.frombuffer(buffers[2], dtype=np.uint8)[first:last].astype(np.uint64)
        # Position of each byte inside its own string.
        pos = np.arange(first, last, dtype=np.int64) - np.repeat(starts, lengths)
        contrib = (data + np.uint64(1)) * _powers(int(lengths.max()))[pos]
        cums = np.zeros(len(contrib) + 1, dtype=np.uint64)
        np.cumsum(contrib, dtype=np.uint64, out=cums[1:])
        # Differences of wrapping prefix sums are exact modulo 2**64, and 0 for empty strings.
        sums = cums[ends - first] - cums[starts - first]
    else:
        sums = np.zeros(n, dtype=np.uint64)
    hashed = mix64_vec(sums ^ (lengths.astype(np.uint64) * np.uint64(_LEN)))
    if arr.null_count:
        nulls = np.asarray(arr.is_null(), dtype=bool)
        hashed[nulls] = np.uint64(NULL_HASH)
    return hashed


def hash_strings(column: pa.Array | pa.ChunkedArray) -> U64:
    """Hash every value of a string column (NULL included) into a uint64 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    parts = [_hash_slice(column.slice(i, _SLICE_ROWS)) for i in range(0, len(column), _SLICE_ROWS)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


def combine(acc: int, value: int) -> int:
    """Fold one hash into an accumulator (scalar)."""
    return mix64((acc * _P + value) & MASK64)


def combine_vec(acc: U64, value: U64 | np.uint64) -> U64:
    """Fold an array of hashes into an accumulator array."""
    return mix64_vec(acc * np.uint64(_P) + value)


def salted(base: int, salt: int) -> int:
    """A new independent hash derived from ``base`` and a small integer salt (scalar)."""
    return mix64(base ^ ((salt * _LEN) & MASK64))


def salted_vec(base: U64, salt: int) -> U64:
    """Vectorised :func:`salted`."""
    return mix64_vec(base ^ np.uint64((salt * _LEN) & MASK64))


def row_hashes(columns: Sequence[pa.Array | pa.ChunkedArray], names: Sequence[str], seed: int, n: int) -> U64:
    """Per-row hash of the feeding input columns (name and value of each), seeded."""
    acc = np.full(n, np.uint64(mix64(seed & MASK64)), dtype=np.uint64)
    for name, col in zip(names, columns, strict=True):
        acc = combine_vec(acc, hash_strings(col) ^ np.uint64(hash_str(name)))
    return acc


def row_hash(values: Sequence[str | None], names: Sequence[str], seed: int) -> int:
    """Scalar reference of :func:`row_hashes` for one row."""
    acc = mix64(seed & MASK64)
    for name, value in zip(names, values, strict=True):
        acc = combine(acc, hash_str(value) ^ hash_str(name))
    return acc
