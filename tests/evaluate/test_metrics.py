"""Metrics against hand-computed rankings (the arithmetic is written out in each test)."""

import numpy as np
import pytest

from hlp.evaluate.metrics import (
    average_precision,
    mean_over_videos,
    tvsum_video_top5_map,
    youtube_video_ap,
)


def test_hand_computed_ranking():
    # ranking = clips 0,1,2,3; labels 1,0,1,0; num_pos = 2
    # rec: 0, .5, .5, 1, 1   prc: 1, 1, 1/2, 2/3, 1/2
    # AP = .5*(1+1)/2 + 0 + .5*(1/2+2/3)/2 + 0 = .5 + 7/24
    ap = average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    assert ap == pytest.approx(0.5 + 7 / 24)


def test_ranking_uses_scores_not_positions():
    # scores rank clips 3,2,1,0 -> ranked labels 1,0,0,1 (clip 3 then clip 0 positive)
    # rec: 0, .5, .5, .5, 1   prc: 1, 1, 1/2, 1/3, 1/2
    # AP = .5*(1+1)/2 + .5*(1/3+1/2)/2 = .5 + 5/24
    ap = average_precision(np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 0, 0, 1]))
    assert ap == pytest.approx(0.5 + 5 / 24)


def test_ties_keep_temporal_order():
    scores = np.array([0.5, 0.5])
    # earlier clip (negative) ranks first: rec 0,0,1 prc 1,0,1/2 -> AP = 1*(0+1/2)/2
    assert average_precision(scores, np.array([0, 1])) == pytest.approx(0.25)
    # earlier clip (positive) ranks first: AP = 1*(1+1)/2
    assert average_precision(scores, np.array([1, 0])) == pytest.approx(1.0)


def test_no_positive_scores_zero_and_all_positive_scores_one():
    scores = np.array([0.3, 0.1, 0.2])
    assert average_precision(scores, np.zeros(3)) == 0.0
    assert average_precision(scores, np.ones(3)) == pytest.approx(1.0)


def test_youtube_labels_are_match_above_zero():
    # match 0 (borderline) and -1 are negatives: ranked labels 0,1,0 -> AP = 1*(0+1/2)/2
    assert youtube_video_ap(np.array([0.9, 0.8, 0.7]), np.array([0, 1, -1])) == pytest.approx(0.25)


def test_tvsum_top5_hand_computed_and_mean_over_annotators():
    # annotator A: [5,1,4,2,3,1], sorted [1,1,2,3,4,5], lower median sorted[2] = 2
    #   labels T,F,T,F,T,F; scores rank clips 1,2,3,4,5,0 -> top-5 labels F,T,F,T,F
    #   num_pos = 2: rec 0,0,.5,.5,1,1  prc 1,0,1/2,1/3,1/2,2/5
    #   AP = .5*(0+1/2)/2 + .5*(1/3+1/2)/2 = 1/8 + 5/24 = 1/3
    # annotator B: all 3 -> nothing above the median -> AP 0; mean = 1/6
    annot = np.array([[5, 3], [1, 3], [4, 3], [2, 3], [3, 3], [1, 3]])
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert tvsum_video_top5_map(scores, annot) == pytest.approx(1 / 6)


def test_tvsum_lower_median_with_even_count():
    # [1,2,3,4]: lower median 2 makes clip 2 (score 3) positive; the upper median 3 would not
    annot = np.array([[1], [2], [3], [4]])
    assert tvsum_video_top5_map(np.array([0.0, 0.0, 1.0, 0.0]), annot, top_k=1) == 1.0


def test_tvsum_fewer_clips_than_top_k():
    # 3 clips, median 2 -> labels F,F,T; ranking 2,1,0 -> top labels T,F,F -> AP 1
    annot = np.array([[1], [2], [3]])
    assert tvsum_video_top5_map(np.array([0.1, 0.2, 0.3]), annot) == 1.0


def test_length_mismatch_names_both_lengths():
    with pytest.raises(ValueError, match="3.*2"):
        average_precision(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="2.*4"):
        tvsum_video_top5_map(np.zeros(2), np.zeros((4, 20)))


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.array([0.1, np.nan]), np.array([1, 0]))


def test_mean_over_videos():
    assert mean_over_videos([0.5, 1.0, 0.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        mean_over_videos([])
