from __future__ import annotations

import h5py
import numpy as np
import pytest

from imc.h5io import ResumableH5, escape, pair_key, read_features, read_matches, split_pair_key, unescape


def test_escape_round_trip():
    for name in ["a/b/c.jpg", "x%2Fy.png", "weird%/name::x.jpg", "plain.jpg"]:
        assert unescape(escape(name)) == name
        assert "/" not in escape(name)
    assert split_pair_key(pair_key("d/s/images/a.jpg", "d/s/images/b.jpg")) == ("d/s/images/a.jpg", "d/s/images/b.jpg")


def test_round_trip_and_finalize(tmp_path):
    path = tmp_path / "features-abc.h5"
    store = ResumableH5(path)
    kp = np.random.default_rng(0).random((70000, 2)).astype(np.float32)  # more than int16 can index
    store.put(escape("s/images/a.jpg"), {"keypoints": kp, "descriptors": np.ones((70000, 4), np.float32)},
              {"image_sha1": "aaa", "image_size": np.array([640, 480])})
    assert not path.exists() and store.parts_dir.is_dir()  # part files only until finalize
    store.finalize()
    assert path.exists() and not store.parts_dir.exists()
    item = read_features(path, "s/images/a.jpg")
    np.testing.assert_array_equal(item["keypoints"], kp)
    assert set(item) == {"keypoints", "descriptors"}  # arrays only: attributes are read apart
    attrs = ResumableH5(path).attrs(escape("s/images/a.jpg"))
    assert attrs["image_sha1"] == "aaa" and list(attrs["image_size"]) == [640, 480]
    with h5py.File(path) as f:
        assert list(f.keys()) == [escape("s/images/a.jpg")]


def test_resume_keeps_finished_items_and_ignores_tmp(tmp_path):
    path = tmp_path / "matches-x.h5"
    store = ResumableH5(path)
    store.put(pair_key("a", "b"), {"matches": np.array([[0, 1], [2, 3]], np.int32)})
    store.finalize()
    # a later run adds one pair, then is killed: its next item was half written under a tmp name
    store = ResumableH5(path)
    store.put(pair_key("a", "c"), {"matches": np.array([[5, 6]], np.int32)})
    (store.parts_dir / "deadbeef.h5.tmp-12345").write_bytes(b"\x89HDF garbage")
    resumed = ResumableH5(path)
    assert sorted(resumed.keys()) == sorted([pair_key("a", "b"), pair_key("a", "c")])
    np.testing.assert_array_equal(read_matches(path, "c", "a")["matches"], [[6, 5]])  # symmetric lookup
    resumed.finalize()
    assert len(ResumableH5(path)) == 2


def test_corrupt_part_is_skipped_not_fatal_and_reading_deletes_nothing(tmp_path):
    store = ResumableH5(tmp_path / "f.h5")
    store.put("k1", {"x": np.zeros(3)})
    (store.parts_dir / "broken.h5").write_bytes(b"not an h5 file")
    fresh = ResumableH5(tmp_path / "f.h5")
    assert fresh.keys() == ["k1"]
    assert (store.parts_dir / "broken.h5").exists()  # a reader never deletes; finalize folds the parts away
    fresh.finalize()
    assert not store.parts_dir.exists() and ResumableH5(tmp_path / "f.h5").keys() == ["k1"]


def test_finalize_keep_drops_the_others(tmp_path):
    store = ResumableH5(tmp_path / "f.h5")
    store.put("k1", {"x": np.zeros(3)})
    store.put("k2", {"x": np.ones(3)})
    store.finalize()
    store = ResumableH5(tmp_path / "f.h5")
    store.finalize(keep=["k2"])
    assert ResumableH5(tmp_path / "f.h5").keys() == ["k2"]
    with pytest.raises(KeyError):
        ResumableH5(tmp_path / "f.h5").get("k1")


def test_concurrent_writers_share_a_store(tmp_path):
    """Two processes filling the same cache take turns (stage lock) and never read a vanished part."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import numpy as np, sys
        from imc.h5io import ResumableH5
        from imc.io_utils import file_lock
        path = {str(tmp_path / 'm.h5')!r}
        for round_ in range(5):
            with file_lock(path):
                store = ResumableH5(path)
                for i in range(20):
                    key = f"k{{i}}"
                    if key not in store:
                        store.put(key, {{"x": np.full(3, i)}})
                assert all(int(store.get(k)["x"][0]) == int(k[1:]) for k in store.keys())
                store.finalize()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert sorted(ResumableH5(tmp_path / "m.h5").keys()) == sorted(f"k{i}" for i in range(20))


def test_clean_stale_tmp_spares_live_writers(tmp_path):
    import os

    from imc.h5io import clean_stale_tmp

    import socket

    host = socket.gethostname()
    live = tmp_path / f"a.h5.tmp-{host}-{os.getppid()}"
    dead = tmp_path / f"b.h5.tmp-{host}-999999999"
    elsewhere = tmp_path / "c.h5.tmp-other-node-999999999"  # another machine sharing the cache
    for p in (live, dead, elsewhere):
        p.write_text("x")
    clean_stale_tmp(tmp_path)
    assert live.exists() and not dead.exists() and elsewhere.exists()


def test_pending_reads_attributes_only_and_a_stale_item_is_replaced_by_put(tmp_path):
    store = ResumableH5(tmp_path / "f.h5")
    store.put("a::b", {"matches": np.zeros((1, 2), np.int32)}, {"image_sha1_0": "x", "image_sha1_1": "y"})
    store.finalize()
    store = ResumableH5(tmp_path / "f.h5")
    assert store.is_current("a::b", {"image_sha1_0": "x", "image_sha1_1": "y"})
    expected = {"a::b": {"image_sha1_0": "x", "image_sha1_1": "changed"},  # image b changed
                "a::c": {"image_sha1_0": "x", "image_sha1_1": "z"}}  # never computed
    assert store.pending(expected) == ["a::b", "a::c"]
    assert "a::b" in store  # checking changed nothing: the stale item is still there
    store.put("a::b", {"matches": np.ones((2, 2), np.int32)}, expected["a::b"])
    store.finalize()
    fresh = ResumableH5(tmp_path / "f.h5")
    assert fresh.pending(expected) == ["a::c"] and fresh.get("a::b")["matches"].shape == (2, 2)
