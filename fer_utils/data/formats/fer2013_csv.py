"""The FER2013 CSV as bytes: a vectorised parser and encoder for the ``pixels`` column.

A FER2013 row is ``<emotion>,<2304 space-separated ints 0..255>,<Usage>`` (the column
order varies between releases). The Python ``csv`` module plus ``int()`` per value
takes tens of seconds for the 35,887 rows; :func:`parse_fer_csv` finds the fields with
``bytes.find`` and rebuilds every pixel from its digits with whole-array numpy
operations (about 1 s). :func:`read_fer2013_rowwise` in ``fer2013.py`` is the readable
reference it is checked against (``benchmarks/bench_formats.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fer_utils.data.formats.common import decode_text, error

FER_SIDE = 48
N_PIXELS = FER_SIDE * FER_SIDE
FER2013_HEADER = "emotion,pixels,Usage"


def read_csv_bytes(path: Path) -> bytes:
    """The file's bytes without a UTF-8 BOM; UTF-16/32 (BOM) files and old-Mac CR line
    ends are converted to the ASCII/LF form the parser reads."""
    if path.is_dir():
        raise error(path, "path", "a FER2013 CSV file, got a folder")
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    elif raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:4096]:
        text = decode_text(raw, path)
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            raise error(path, f"line {line}", "ASCII digits, commas and Usage names", text[exc.start]) from None
    if b"\n" not in raw and b"\r" in raw:
        raw = raw.replace(b"\r", b"\n")
    if not raw or raw.isspace():
        raise error(path, "line 1", "a header line and data rows (the file is empty)")
    return raw


def _pixel_row_problem(text: str) -> str | None:
    """Why one pixel string is bad (slow path used only to name the first bad row)."""
    values = text.strip().strip('"').split()
    for v in values:
        if not v.isdigit() or not v.isascii():
            return f"2304 space-separated integers 0..255, found non-integer {v!r}"
        if int(v) > 255:
            return f"pixel values 0..255, found {v}"
    if len(values) != N_PIXELS:
        return f"{N_PIXELS} pixel values (48x48), got {len(values)}"
    return None


def _parse_chunk(c: np.ndarray, gs: np.ndarray, ge: np.ndarray, bufs: tuple) -> np.ndarray | None:
    """Pixel values of one chunk of rows, or None when any row is malformed.

    ``c`` spans the chunk's pixel fields plus one byte either side; ``gs``/``ge`` are the
    gaps between fields (other columns, newlines). Digit runs are found with a shifted
    comparison and each value is rebuilt from at most three digits.
    """
    m = len(c)
    d_buf, isd_buf, end_buf, tmp_buf = bufs
    d = np.subtract(c, np.uint8(48), out=d_buf[:m])
    isd = np.less(d, 10, out=isd_buf[:m])
    ln = ge - gs
    gap = np.arange(ln.sum()) + np.repeat(gs - np.concatenate(([0], np.cumsum(ln)[:-1])), ln)
    gc = c[gap]
    n_ok = np.count_nonzero(isd) + np.count_nonzero(np.equal(c, 32, out=tmp_buf[:m]))
    n_gap_ok = np.count_nonzero(((gc - np.uint8(48)) < 10) | (gc == 32))
    n_edge_ok = int(isd[0] or c[0] == 32) + int(isd[-1] or c[-1] == 32)
    if n_ok - n_gap_ok - n_edge_ok != m - len(gap) - 2:  # a byte that is neither digit nor space
        return None
    isd[gap] = False
    isd[0] = isd[-1] = False
    endmask = end_buf[:m]
    np.invert(isd[1:], out=endmask[:-1])
    endmask[:-1] &= isd[:-1]
    endmask[-1] = False
    e = np.flatnonzero(endmask)
    counts = np.diff(np.searchsorted(e, np.concatenate(([0], gs, [m]))))
    if not (counts == N_PIXELS).all():
        return None
    d1 = isd[e - 1]
    d12 = d1 & isd[e - 2]
    if (d12 & isd[e - 3]).any():  # four or more digits
        return None
    v = d[e].astype(np.int16)
    v += 10 * (d[e - 1] * d1).astype(np.int16)
    v += 100 * (d[e - 2] * d12).astype(np.int16)
    return v if int(v.max()) <= 255 else None


def parse_pixel_fields(b: np.ndarray, ps: np.ndarray, pe: np.ndarray, path: Path,
                       lines: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
    """Parse N pixel fields b[ps[i]:pe[i]] (digits and spaces) into (N, 2304) uint8.

    Counts, characters and ranges are validated per chunk; only a failing chunk is
    re-scanned row by row to name the first bad row.
    """
    n = len(ps)
    out = np.empty((n, N_PIXELS), np.uint8)
    bounds = list(range(0, n, rows_per_chunk)) + [n]
    longest = max((pe[i1 - 1] - ps[i0] + 2 for i0, i1 in zip(bounds[:-1], bounds[1:])), default=0)
    # work buffers reused by every chunk (fresh large arrays would page-fault each time)
    bufs = (np.empty(longest, np.uint8), np.empty(longest, bool), np.empty(longest, bool),
            np.empty(longest, bool))
    for i0, i1 in zip(bounds[:-1], bounds[1:]):
        base = ps[i0] - 1
        v = _parse_chunk(b[base:pe[i1 - 1] + 1], pe[i0:i1 - 1] - base, ps[i0 + 1:i1] - base, bufs)
        if v is None:
            for i in range(i0, i1):
                problem = _pixel_row_problem(bytes(b[ps[i]:pe[i]]).decode("latin-1"))
                if problem:
                    raise error(path, f"line {lines[i]} (data row {i}), column pixels", problem)
            raise error(path, f"lines {lines[i0]}-{lines[i1 - 1]}", "valid pixel strings")  # pragma: no cover
        out[i0:i1] = v.reshape(-1, N_PIXELS)
    return out


def _field_bounds(raw: bytes, h: int, k: int, names: list[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte of every field of every data row, (N, ncols) each.

    Line and comma positions come from ``bytes.find``/``count`` (C memchr), one call per line.
    """
    ncols = len(names)
    starts, ends, commas = [], [], []
    pos = h + 1
    while pos <= k:
        end = raw.find(b"\n", pos, k)
        end = k if end < 0 else end
        if raw.count(b",", pos, end) != ncols - 1:
            line = len(starts) + 2
            raise error(path, f"line {line} (data row {line - 2})",
                        f"{ncols} comma-separated fields ({','.join(names)})", raw[pos:end].decode("latin-1"))
        c = pos - 1
        for _ in range(ncols - 1):
            c = raw.find(b",", c + 1, end)
            commas.append(c)
        starts.append(pos)
        ends.append(end)
        pos = end + 1
    cp = np.array(commas, dtype=np.int64).reshape(len(starts), ncols - 1)
    return np.column_stack((starts, cp + 1)), np.column_stack((cp, ends))


def parse_fer_csv(path: Path) -> dict[str, Any]:
    """Parse one FER2013-style CSV (any column order; pixels required); pixels vectorised.

    Returns {"images" (N, 48, 48) uint8, "columns" (other column name -> list of str),
    "lines" (1-based line of each row)}.
    """
    raw = read_csv_bytes(path)
    k = len(raw)
    while k and raw[k - 1] in b"\r\n\t ":
        k -= 1
    if k == len(raw):
        raw = raw + b"\n"  # the parser reads the byte after the last field
    h = raw.find(b"\n")
    header = raw[:h].decode("latin-1").strip()
    names = [c.strip().strip('"').strip() for c in header.split(",")]
    lower = [c.lower() for c in names]
    if "pixels" not in lower:
        raise error(path, "line 1 (header)", f"a 'pixels' column, as in {FER2013_HEADER!r}", header)
    if any(c not in ("emotion", "pixels", "usage") for c in lower) or len(set(lower)) != len(lower):
        raise error(path, "line 1 (header)", "columns emotion, pixels, Usage (each once)", header)
    if h >= k:
        raise error(path, "line 2", "data rows after the header (the file has only a header)")
    fs, fe = _field_bounds(raw, h, k, names, path)
    b = np.frombuffer(raw, np.uint8)
    lines = np.arange(2, len(fs) + 2)
    pcol = lower.index("pixels")
    ps, pe = fs[:, pcol].copy(), fe[:, pcol].copy()
    for _ in range(2):  # trim a '\r' and quotes around the field
        pe -= (b[pe - 1] == 13) & (pe > ps)
        ps += (b[ps] == 34) & (pe > ps)
        pe -= (b[pe - 1] == 34) & (pe > ps)
    images = parse_pixel_fields(b, ps, pe, path, lines)
    columns = {name: [raw[s:e].decode("latin-1").strip().strip('"').strip()
                      for s, e in zip(fs[:, j].tolist(), fe[:, j].tolist())]
               for j, name in enumerate(lower) if j != pcol}
    return {"images": images.reshape(-1, FER_SIDE, FER_SIDE), "columns": columns, "lines": lines}


def encode_pixel_rows(images: np.ndarray) -> list[str]:
    """(N, 48, 48) uint8 -> N strings of 2304 space-separated ints (vectorised)."""
    out: list[str] = []
    flat_all = images.reshape(len(images), -1)
    for i0 in range(0, len(flat_all), 2048):
        flat = flat_all[i0:i0 + 2048]
        k = flat.shape[1]
        v = flat.astype(np.int32).ravel()
        nd = 1 + (v >= 10) + (v >= 100)
        end = np.cumsum(nd + 1)
        buf = np.full(int(end[-1]), 32, np.uint8)
        last = end - 2
        buf[last] = 48 + v % 10
        m = nd >= 2
        buf[last[m] - 1] = 48 + (v[m] // 10) % 10
        m = nd >= 3
        buf[last[m] - 2] = 48 + v[m] // 100
        blob = buf.tobytes()
        row_end = end[k - 1::k] - 1
        row_start = np.concatenate(([0], end[k - 1::k][:-1]))
        out.extend(blob[s:e].decode("ascii") for s, e in zip(row_start.tolist(), row_end.tolist()))
    return out
