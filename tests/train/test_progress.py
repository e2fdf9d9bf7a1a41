"""The per-epoch line a person watches: run, epoch, loss, validation mAP, elapsed time and ETA."""

from __future__ import annotations

from hlp.train.progress import EpochLine


def test_the_eta_is_the_mean_trained_epoch_times_the_epochs_left():
    line = EpochLine("seed 0", 8, started=0.0)
    assert line(0, None, 0.5, now=2.0) == "seed 0 | epoch 0/8 | val mAP 0.500 | 0:00:02 elapsed | ETA ?"
    # Epoch 0 only validates: after epoch 1, 12 s for one trained epoch, 7 left.
    assert line(1, 1.2345, 0.61, now=12.0) == \
        "seed 0 | epoch 1/8 | loss 1.234 | val mAP 0.610 | 0:00:12 elapsed | ETA 0:01:24"
    assert line(8, 0.5, 0.7, now=3725.0).endswith("1:02:05 elapsed | done")


def test_a_resumed_run_counts_only_the_epochs_it_trained():
    line = EpochLine("trial 1a2b", 8, started=0.0)
    assert line(5, 1.0, None, now=10.0).endswith("| 0:00:10 elapsed | ETA 0:00:30")
    assert line(6, 1.0, None, now=20.0).endswith("| 0:00:20 elapsed | ETA 0:00:20")
