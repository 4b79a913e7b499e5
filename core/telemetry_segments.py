"""The Arrow side of the local telemetry store (core.telemetry_store): a window's segments read, cut to the
window and typed; the labels' segments read and joined to their requests. No SQLite here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


def in_window(table: "pa.Table", start_us: int, end_us: int, deployment: str | None) -> "pa.Table":
    """The rows of [start, end) (and of the deployment): segments on the window's edges hold more."""
    import pyarrow.compute as pc

    times = table["time_us"]
    bounds = pc.min_max(times)
    if not table.num_rows or (bounds["min"].as_py() >= start_us and bounds["max"].as_py() < end_us
                              and deployment is None):
        return table
    keep = pc.and_(pc.greater_equal(times, start_us), pc.less(times, end_us))
    if deployment is not None:
        keep = pc.and_(keep, pc.equal(table["deployment"], deployment))
    return table.filter(keep)


def join_labels(table: "pa.Table", labels: "pa.Table") -> "pa.Array":
    """Each row's label (null until it arrives), dictionary-encoded. Rows are in time order and labels carry
    their request's time, so a label finds its row by binary search; only ties in time compare more than one id."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not labels.num_rows or not table.num_rows:
        return pa.nulls(table.num_rows, pa.string())
    label = labels["label"].combine_chunks()  # one dictionary: the join takes indices, not strings
    if not pa.types.is_dictionary(label.type):
        label = label.cast(pa.string()).dictionary_encode()
    ids, label_ids = table["request_id"], labels["request_id"].cast(pa.string())
    times = table["time_us"].to_numpy()
    label_times = labels["request_us"].to_numpy(zero_copy_only=False)
    at = np.minimum(np.searchsorted(times, label_times), times.size - 1)
    found = pc.equal(ids.take(pa.array(at)), label_ids).fill_null(False).to_numpy(zero_copy_only=False)
    which = np.full(times.size, -1, dtype=np.int64)
    which[at[found]] = np.flatnonzero(found)
    if not found.all():  # several requests at one instant, or a label of a row outside this deployment
        rest = np.flatnonzero(~found)
        rows = _same_time(times, label_times[rest])  # the only rows these labels can belong to
        if rows.size:
            index = pc.index_in(ids.take(pa.array(rows)), value_set=label_ids.take(pa.array(rest)))
            index = index.to_numpy(zero_copy_only=False)
            hit = ~np.isnan(index) if index.dtype.kind == "f" else index >= 0
            which[rows[hit]] = rest[index[hit].astype(np.int64)]
    return label.take(pa.array(which, mask=which < 0))


def _same_time(times: "np.ndarray", wanted: "np.ndarray") -> "np.ndarray":
    """Positions in sorted `times` of the values equal to one of `wanted`."""
    import numpy as np

    low, high = np.searchsorted(times, wanted, "left"), np.searchsorted(times, wanted, "right")
    counts = high - low
    starts = np.repeat(low - (np.cumsum(counts) - counts), counts)  # each run's offset, per position
    return np.unique(starts + np.arange(counts.sum()))


def labels_table(rows: list[tuple]) -> "pa.Table":
    """(request_id, label JSON text, label time_us, endpoint, request_us) rows -> a label segment's table."""
    import pyarrow as pa

    ids, labels, times, _, requests = zip(*rows, strict=True) if rows else ((),) * 5
    return pa.table({"request_id": pa.array(ids, pa.string()), "label": pa.array(labels, pa.string()),
                     "time_us": pa.array(times, pa.int64()), "request_us": pa.array(requests, pa.int64())})


def latest_labels(paths: list[str], start_us: int | None = None, end_us: int | None = None, *,
                  distinct: bool = False) -> "pa.Table":
    """The labels of these segments (in catalog order) whose request lies in [start, end): per request, the
    one of the last segment that holds it, which was the stored winner when that segment was written.

    `distinct`: the caller knows that no request has a label in two of these segments (a segment holds one
    label per request, and the catalog has one segment per request hour), so there is no winner to pick; the
    rows then come in no particular order, without the label time (`time_us`), the label dictionary-encoded.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not paths:
        return labels_table([])
    table = _read_distinct_labels(paths) if distinct else _read_labels(paths)
    if start_us is not None and end_us is not None and table.num_rows:
        requests = table["request_us"]
        bounds = pc.min_max(requests)
        if bounds["min"].as_py() < start_us or bounds["max"].as_py() >= end_us:  # hour segments: often all inside
            table = table.filter(pc.and_(pc.greater_equal(requests, start_us), pc.less(requests, end_us)))
    if distinct:
        return table
    # a request has one time, so labels of distinct request times are of distinct requests: a sort of the
    # times (~10 ms for 250k labels) settles it without hashing every id
    times = np.sort(table["request_us"].to_numpy(zero_copy_only=False))
    if not (times[1:] == times[:-1]).any():
        return table
    order = pa.array(np.arange(table.num_rows))
    last = table.append_column("order", order).group_by("request_id").aggregate([("order", "max")])
    return table.take(last["order_max"])


def _read_labels(paths: list[str]) -> "pa.Table":
    """Every column of the segments, in catalog order (the order decides which label of a request wins)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(paths) == 1:
        return pq.read_table(paths[0])
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(paths), 4)) as pool:  # the reads release the GIL
        return pa.concat_tables(list(pool.map(pq.read_table, paths)))


def _read_distinct_labels(paths: list[str]) -> "pa.Table":
    """What a join needs, in one multi-threaded scan: labels repeat a few values, so they come as a dictionary."""
    import pyarrow.dataset as ds

    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=["label"]))
    return ds.dataset(paths, format=fmt).to_table(columns=["request_id", "label", "request_us"])


def write_parquet(table: "pa.Table", out: Any) -> None:
    """A segment as written everywhere: LZ4; dictionary pages for text that repeats (deployment, version, text
    inputs, labels), none for request ids (all distinct) or numbers (plain pages decode fastest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [f.name for f in table.schema if f.name != "request_id" and (pa.types.is_string(f.type) or
                                                                       pa.types.is_dictionary(f.type))]
    pq.write_table(table, out, compression="lz4", use_dictionary=text)


def read_segments(paths: list[str]) -> "pa.Table":
    """Every segment in one read on pyarrow's threads, schemas unified (a key can be typed differently in
    different segments, and each segment holds only the keys it saw). Text columns of few values (deployment,
    model version, text inputs) come dictionary-encoded: a categorical later, with no string per row."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    schema = pa.unify_schemas([pq.read_schema(path) for path in paths], promote_options="permissive")
    text = [f.name for f in schema if pa.types.is_string(f.type) and f.name in _FEW_VALUES or f.name[:2] == "s:"]
    if len(paths) == 1:
        return pq.read_table(paths[0], read_dictionary=text)
    fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=text))
    schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), pa.string())) if f.name in text else f
                        for f in schema])
    return ds.dataset(paths, schema=schema, format=fmt).to_table()


def sample_segments(paths: list[str], keep: Any) -> "pa.Table":
    """The rows `keep` (a function of a table) keeps of each segment, read a batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = [keep(pa.Table.from_batches([batch])) for path in paths for batch in
             pq.ParquetFile(path).iter_batches(batch_size=1 << 16)]
    return pa.concat_tables(parts, promote_options="permissive") if parts else empty()


_FEW_VALUES = frozenset({"deployment", "model_version"})


def plain_text(table: "pa.Table") -> "pa.Table":
    import pyarrow as pa

    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                                 for f in table.schema]))


def ascending(times: "pa.ChunkedArray") -> bool:
    values = times.to_numpy()
    return bool((values[1:] >= values[:-1]).all())


def fixed_fields() -> dict:
    import pyarrow as pa

    return {"time_us": pa.field("time_us", pa.int64()), "score": pa.field("score", pa.float64()),
            "latency_ms": pa.field("latency_ms", pa.float64()), "status_code": pa.field("status_code", pa.int64()),
            "prediction": pa.field("prediction", pa.float64())}


FIXED_COLUMNS = ("time_us", "request_id", "deployment", "model_version", "score", "latency_ms", "status_code",
                 "prediction", "prediction_json", "generation", "label")


def with_fixed_columns(table: "pa.Table") -> "pa.Table":
    """Every fixed column present and typed (an empty window, or one with no number predictions, lacks some)."""
    import pyarrow as pa

    fields = {**{name: pa.field(name, pa.string()) for name in FIXED_COLUMNS}, **fixed_fields()}
    for name in FIXED_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(fields[name], pa.nulls(table.num_rows, fields[name].type))
        elif table.schema.field(name).type != fields[name].type and not (  # dictionary-encoded text is text
                pa.types.is_dictionary(table.schema.field(name).type) and fields[name].type == pa.string()):
            table = table.set_column(table.column_names.index(name), fields[name],
                                     table[name].cast(fields[name].type))
    return table


def empty() -> "pa.Table":
    import pyarrow as pa

    return pa.table({"time_us": pa.array([], pa.int64()), "request_id": pa.array([], pa.string())})
