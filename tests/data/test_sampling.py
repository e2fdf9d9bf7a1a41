"""Properties of the section 4.2 window sampler."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlp.data.sampling import (
    can_contrast,
    meets_ratio,
    minority_needed,
    sample_window,
    windows_per_video,
)

videos = st.lists(st.booleans(), min_size=1, max_size=120).map(np.array)
lengths = st.integers(1, 30)
ratios = st.sampled_from([0.1, 0.25, 1 / 3, 0.5, 2 / 3, 1.0])
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(videos, lengths, ratios, seeds)
def test_indices_sorted_unique_in_range(labels, length, ratio, seed):
    idx = sample_window(labels, length, ratio, np.random.default_rng(seed))
    assert len(idx) == min(length, len(labels))
    assert np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < len(labels)


@settings(max_examples=300, deadline=None)
@given(videos, lengths, ratios, seeds)
def test_ratio_met_when_video_has_enough_of_both(labels, length, ratio, seed):
    needed = minority_needed(length, ratio)
    enough = min(labels.sum(), (~labels).sum()) >= needed
    reachable = meets_ratio(needed, length - needed, ratio)
    idx = sample_window(labels, length, ratio, np.random.default_rng(seed))
    if len(labels) > length and enough and reachable:
        pos = int(labels[idx].sum())
        assert meets_ratio(pos, len(idx) - pos, ratio)


@settings(max_examples=300, deadline=None)
@given(videos, lengths, ratios, seeds)
def test_contiguous_window_kept_when_it_already_meets_ratio(labels, length, ratio, seed):
    if len(labels) <= length:
        return
    start = int(np.random.default_rng(seed).integers(0, len(labels) - length + 1))
    pos = int(labels[start : start + length].sum())
    idx = sample_window(labels, length, ratio, np.random.default_rng(seed))
    if meets_ratio(pos, length - pos, ratio):
        np.testing.assert_array_equal(idx, np.arange(start, start + length))


@settings(max_examples=100, deadline=None)
@given(videos, lengths, ratios, seeds)
def test_deterministic_under_fixed_seed(labels, length, ratio, seed):
    a = sample_window(labels, length, ratio, np.random.default_rng(seed))
    b = sample_window(labels, length, ratio, np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)


def test_imbalanced_window_is_rebalanced_in_temporal_order():
    # 20 negatives then 10 positives: a window starting before clip 7 has < 7 positives,
    # and 7 of 20 is the least that meets 1:2
    labels = np.array([False] * 20 + [True] * 10)
    for seed in range(20):
        idx = sample_window(labels, 20, 0.5, np.random.default_rng(seed))
        pos = int(labels[idx].sum())
        assert meets_ratio(pos, 20 - pos, 0.5) and np.all(np.diff(idx) > 0)


def test_short_video_returned_whole_and_one_class_best_effort():
    np.testing.assert_array_equal(
        sample_window(np.array([True, False, False]), 20, 0.5, np.random.default_rng(0)),
        np.arange(3),
    )
    idx = sample_window(np.zeros(50, bool), 20, 0.5, np.random.default_rng(0))
    assert len(idx) == 20 and np.all(np.diff(idx) == 1)


def test_minority_needed_matches_closed_form():
    # ceil(20 * 0.5 / 1.5) = ceil(6.67) = 7: 7/13 >= 1/2 but 6/14 < 1/2
    assert minority_needed(20, 0.5) == 7


def test_can_contrast_and_windows_per_video():
    assert can_contrast(np.array([True, False])) and not can_contrast(np.ones(4, bool))
    assert not can_contrast(np.zeros(0, bool))
    assert [windows_per_video(n, 20) for n in (0, 1, 20, 21, 100)] == [1, 1, 1, 2, 5]
    with pytest.raises(ValueError):
        windows_per_video(10, 0)


def test_invalid_ratio_rejected():
    with pytest.raises(ValueError):
        sample_window(np.ones(30, bool), 20, 0.0, np.random.default_rng(0))
