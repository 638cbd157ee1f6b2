import sqlite3
import threading

import orjson
import pytest

from arnstream.errors import RecordError
from arnstream.feedback import FeedbackStore, make_label
from arnstream.feedback.store import Evicted, ScoredRecord


def _rows(ids, flagged=False, version="v0001"):
    return [(i, version, 0.9 if flagged else 0.1, flagged, orjson.dumps({"flow_id": i, "x": n}))
            for n, i in enumerate(ids)]


@pytest.fixture
def store(tmp_path):
    s = FeedbackStore(tmp_path / "fb" / "store.sqlite3", max_age_s=100.0, max_records=1000)
    yield s
    s.close()


def test_a_label_joins_its_record_and_labels_are_idempotent(store):
    store.put_scored(_rows(["a", "b"]), now=10.0)
    assert store.add_label(make_label("a", "anomaly", "ana", at=1.0)) == "new"
    assert store.add_label(make_label("a", "anomaly", "bob", at=2.0)) == "duplicate"
    assert store.label_counts() == {"anomaly": 1, "normal": 0}
    assert store.add_label(make_label("a", "normal", "bob", at=3.0)) == "replaced"
    # older than the label it would replace: ignored
    assert store.add_label(make_label("a", "anomaly", "eve", at=0.5)) == "outdated"
    [labelled] = store.labelled()
    assert (labelled.record_id, labelled.y, labelled.record) == ("a", 0, {"flow_id": "a", "x": 0})


def test_a_label_for_an_unknown_or_evicted_record_is_an_error(store):
    with pytest.raises(RecordError, match="unknown record id") as err:
        store.add_label(make_label("ghost", "anomaly", "ana"))
    assert err.value.field == "record_id"
    store.put_scored(_rows(["old"]), now=0.0)
    assert store.maintain(now=150.0).by_age == 1
    with pytest.raises(RecordError, match="evicted"):
        store.add_label(make_label("old", "anomaly", "ana"))


def test_eviction_by_age_then_size_is_counted_and_keeps_labelled_records(store):
    store.put_scored(_rows([f"old{i}" for i in range(5)]), now=0.0)
    store.put_scored(_rows([f"mid{i}" for i in range(600)]), now=60.0)
    store.add_label(make_label("mid0", "anomaly", "ana"))
    store.put_scored(_rows([f"new{i}" for i in range(600)]), now=90.0)
    evicted = store.maintain(now=120.0)
    assert (evicted.by_age, evicted.by_size) == (5, 200)  # 1200 left, the oldest 200 beyond 1000 go
    assert store.count_scored() == 1000
    assert store.labelled()[0].record == {"flow_id": "mid0", "x": 0}  # the labelled copy outlives eviction


def test_recent_unflagged_skips_flagged_and_labelled_records_newest_first(store):
    store.put_scored(_rows(["n1", "n2"]), now=1.0)
    store.put_scored(_rows(["f1"], flagged=True), now=2.0)
    store.put_scored(_rows(["n3"]), now=3.0)
    store.add_label(make_label("n2", "normal", "ana"))
    assert [(rid, r["flow_id"]) for rid, r in store.recent_unflagged(10)] == [("n3", "n3"), ("n1", "n1")]
    assert [rid for rid, _ in store.recent_unflagged(1)] == ["n3"]
    assert [rid for rid, _ in store.recent_flagged(10)] == ["f1"]


def test_labels_since_counts_new_and_changed_labels(store):
    store.put_scored(_rows(["a", "b"]), now=1.0)
    store.add_label(make_label("a", "anomaly", "ana"), now=10.0)
    store.add_label(make_label("b", "anomaly", "ana"), now=20.0)
    assert store.labels_since(15.0) == 1
    store.add_label(make_label("a", "anomaly", "ana"), now=30.0)  # duplicate: not new
    assert store.labels_since(25.0) == 0
    store.add_label(make_label("a", "normal", "ana"), now=40.0)
    assert store.labels_since(25.0) == 1


def test_two_connections_write_and_read_concurrently(tmp_path):
    path = tmp_path / "store.sqlite3"
    writer, errors = FeedbackStore(path), []

    def label_while_writing():
        reader = FeedbackStore(path)
        try:
            for i in range(50):
                while True:
                    try:
                        reader.add_label(make_label(f"r{i}", "anomaly", "ana"))
                        break
                    except RecordError:  # not written yet
                        pass
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            reader.close()

    thread = threading.Thread(target=label_while_writing)
    thread.start()
    for i in range(50):
        writer.put_scored(_rows([f"r{i}"]))
    thread.join(30)
    assert not errors and not thread.is_alive()
    assert writer.label_counts()["anomaly"] == 50
    writer.close()


def test_a_repeated_id_keeps_its_last_row_within_a_batch_and_across_batches(tmp_path):
    s = FeedbackStore(tmp_path / "store.sqlite3")
    try:
        rows = _rows([f"r{i}" for i in range(40)]) + _rows(["r3"], flagged=True, version="v0002")
        s.put_scored(rows, now=5.0)
        assert s.count_scored() == 40
        assert s.scored("r3") == ScoredRecord("r3", 5.0, "v0002", 0.9, 1, rows[40][4])
        assert s.scored("r39") == ScoredRecord("r39", 5.0, "v0001", 0.1, 0, rows[39][4])
        assert s.scored("r4") is not None and s.scored("r") is None and s.scored("r3'") is None
        # re-scored in a later batch (re-read after a crash): the newer row is the record's
        s.put_scored(_rows(["r5"], version="v0003"), now=6.0)
        assert s.scored("r5").model_version == "v0003"
        assert [rid for rid, _ in s.recent_unflagged(3)] == ["r5", "r39", "r38"]
        assert "r5" not in [rid for rid, _ in s.recent_unflagged(100)][1:]
        assert s.count_scored() == 41  # both rows, until the older batch is evicted
    finally:
        s.close()


def test_ids_of_any_text_are_found_exactly(store):
    ids = ["a", "ab", "b:a", "", "x\nb", "\u00e9t\u00e9", "7", "a b"]
    store.put_scored(_rows(ids), now=1.0)
    for n, rid in enumerate(ids):
        assert orjson.loads(store.scored(rid).record) == {"flow_id": rid, "x": n}
    assert store.scored("a b ") is None and store.scored("b") is None


def test_size_eviction_trims_the_oldest_batch_it_does_not_drop_whole(tmp_path):
    s = FeedbackStore(tmp_path / "store.sqlite3", max_records=10)
    try:
        s.put_scored(_rows([f"a{i}" for i in range(6)]), now=1.0)
        s.put_scored(_rows([f"b{i}" for i in range(6)], flagged=True), now=2.0)
        assert s.maintain(now=3.0) == Evicted(by_age=0, by_size=2)
        assert s.count_scored() == 10
        assert s.scored("a1") is None and s.scored("a2") == ScoredRecord("a2", 1.0, "v0001", 0.1, 0, _rows(
            [f"a{i}" for i in range(6)])[2][4])
        assert [rid for rid, _ in s.recent_unflagged(10)] == ["a5", "a4", "a3", "a2"]
        assert s.maintain(now=3.0) == Evicted(0, 0)
        s.max_records = 3
        assert s.maintain(now=3.0) == Evicted(0, 7)
        assert [rid for rid, _ in s.recent_flagged(10)] == ["b5", "b4", "b3"]
    finally:
        s.close()


def test_a_store_of_a_row_per_record_is_converted_on_open(tmp_path):
    path = tmp_path / "store.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE scored (record_id TEXT PRIMARY KEY, scored_at REAL NOT NULL, model_version TEXT NOT NULL,
            score REAL NOT NULL, flagged INTEGER NOT NULL, record BLOB NOT NULL);
        CREATE TABLE labels (record_id TEXT PRIMARY KEY, label INTEGER NOT NULL, analyst TEXT NOT NULL,
            at REAL NOT NULL, note TEXT, received_at REAL NOT NULL, record BLOB NOT NULL, score REAL,
            flagged INTEGER, model_version TEXT);""")
    rows = [(rid, at, "v0001", 0.5, flagged, orjson.dumps({"flow_id": rid}))
            for rid, at, flagged in [("p", 1.0, 0), ("q", 1.0, 1), ("r", 2.0, 0)]]
    old.executemany("INSERT INTO scored VALUES (?, ?, ?, ?, ?, ?)", rows)
    old.commit()
    old.close()
    s = FeedbackStore(path, max_age_s=100.0)
    try:
        assert s.count_scored() == 3 and s.scored("q") == ScoredRecord("q", 1.0, "v0001", 0.5, 1, rows[1][5])
        assert [rid for rid, _ in s.recent_unflagged(10)] == ["r", "p"]
        assert s.maintain(now=101.5) == Evicted(by_age=2, by_size=0)  # each batch kept its time
        assert s.db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'scored'").fetchone() == (0,)
    finally:
        s.close()
    FeedbackStore(path).close()  # opens again as it is


def test_the_alert_span_counts_records_scored_since_the_oldest_unlabelled_alert(store):
    assert store.alert_span(10) == (0, 0)
    store.put_scored(_rows(["n1", "f1"], flagged=False) + _rows(["f2", "f3"], flagged=True), now=1.0)
    store.put_scored(_rows(["n2", "n3"]) + _rows(["f4"], flagged=True), now=2.0)
    store.add_label(make_label("f3", "normal", "ana"))  # a false alarm triaged away
    store.add_label(make_label("n2", "normal", "ana"))  # not an alert: not counted as triaged
    assert store.alert_span(10) == (5, 1)  # from f2 on: f2, f3, n2, n3, f4
    assert store.alert_span(1) == (1, 0)  # f4 alone


def test_labels_joined_at_once_end_as_joined_one_by_one(tmp_path):
    labels = [make_label("a", "anomaly", "ana", at=1.0), make_label("ghost", "anomaly", "ana", at=1.0),
              make_label("b", "normal", "ana", at=1.0), make_label("a", "anomaly", "bob", at=2.0),
              make_label("a", "normal", "bob", at=3.0), make_label("b", "anomaly", "eve", at=0.5),
              make_label("c", "anomaly", "ana", at=1.0)]
    ends = []
    for one_by_one in (True, False):
        s = FeedbackStore(tmp_path / f"{one_by_one}.sqlite3")
        try:
            s.put_scored(_rows(["a", "c"]), now=1.0)
            s.put_scored(_rows(["b", "c"], flagged=True, version="v0002"), now=2.0)  # c re-scored: its newer row
            if one_by_one:
                outcomes = []
                for label in labels:
                    try:
                        outcomes.append(s.add_label(label, now=9.0))
                    except RecordError as exc:
                        outcomes.append(exc)
            else:
                outcomes = s.add_labels(labels, now=9.0)
            ends.append(([o if isinstance(o, str) else str(o) for o in outcomes],
                         s.db.execute("SELECT * FROM labels ORDER BY record_id").fetchall()))
        finally:
            s.close()
    assert ends[0] == ends[1]
    outcomes, rows = ends[1]
    assert outcomes[0] == "new" and "unknown record id 'ghost'" in outcomes[1]
    assert outcomes[2:] == ["new", "duplicate", "replaced", "outdated", "new"]
    assert [(r[0], r[1], r[9]) for r in rows] == [("a", 0, "v0001"), ("b", 0, "v0002"), ("c", 1, "v0002")]
