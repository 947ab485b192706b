import numpy as np

from slicetwin.core.transitions import Transitions
from trainer.worker.store import DatasetStore


def _rows(cells, windows):
    n = len(cells)
    z = np.zeros
    return Transitions(z((n, 3), np.float32), np.arange(n, dtype=np.int64), z(n, np.float32),
                       z(n, np.float32), z((n, 3), np.float32), z((n, 3), np.float32),
                       z((n, 3), np.float32), z(n, np.float32),
                       np.asarray(cells, np.int64), np.asarray(windows, np.int64))


def test_load_drops_a_transition_written_twice_under_two_stream_ids(tmp_path):
    store = DatasetStore(tmp_path)
    store.append(_rows([1, 1, 2], [10, 11, 10]), ["1-0", "1-1", "1-2"])
    # the sink retried a write whose reply was lost: cell 1 window 11 arrives again
    store.append(_rows([1, 2], [11, 11]), ["2-0", "2-1"])
    data, ids = store.load()
    assert len(store) == 5  # durable files keep every entry (acknowledgement is by stream id)
    pairs = list(zip(data.cell.tolist(), data.window.tolist(), strict=True))
    assert sorted(pairs) == [(1, 10), (1, 11), (2, 10), (2, 11)]
    assert list(ids) == ["1-0", "1-1", "1-2", "2-1"]  # first copy kept, order preserved
    # a fresh process reading the same files sees the same de-duplicated data
    data2, ids2 = DatasetStore(tmp_path).load()
    assert list(ids2) == list(ids)
