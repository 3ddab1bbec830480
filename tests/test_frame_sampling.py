"""Sampling by presentation time, by hand: target times, the frame on screen at a time, durations."""
import numpy as np
import pytest

from prvr.video.frame_sampling import (indices_at_times, presentation_duration, regular_step, sample_indices,
                                      sample_times, select_frames)


def test_sample_times_are_bin_centres_in_seconds():
    np.testing.assert_allclose(sample_times(10.0, fps=1.0), np.arange(10) + 0.5)
    np.testing.assert_allclose(sample_times(10.0, num_frames=4), [1.25, 3.75, 6.25, 8.75])
    np.testing.assert_allclose(sample_times(10.0, fps=2.0, n_frames=5), [1, 3, 5, 7, 9])  # capped at N
    np.testing.assert_allclose(sample_times(10.0, fps=2.0, max_frames=2), [2.5, 7.5])
    np.testing.assert_allclose(sample_times(0.1, fps=2.0), [0.05])  # a short clip still gives a frame
    np.testing.assert_allclose(sample_times(3.0, n_frames=3), [0.5, 1.5, 2.5])


@pytest.mark.parametrize("kwargs", [{"duration": 1.0, "fps": 0.0}, {"duration": 1.0, "num_frames": 0},
                                    {"duration": 1.0, "fps": 2.0, "max_frames": 0}, {"duration": 1.0},
                                    {"duration": -1.0, "fps": 2.0}, {"duration": float("nan"), "fps": 2.0}])
def test_sample_times_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        sample_times(**kwargs)


def test_frame_on_screen_is_the_last_one_started():
    starts = [0.0, 1.0, 2.0, 3.0]
    times = [0.0, 0.5, 1.0, 2.99, 3.5, 100.0]
    assert indices_at_times(starts, times).tolist() == [0, 0, 1, 2, 3, 3]


def test_ties_and_boundaries():
    starts = [0.0, 1.0, 2.0]
    # exactly on a start reads that frame; float32 noise (< 1e-4 s) below a start still does
    assert indices_at_times(starts, [1.0, 1.0 - 5e-5, 0.999]).tolist() == [1, 1, 0]
    assert indices_at_times(starts, [1.0 - 5e-5], tolerance=0.0).tolist() == [0]
    assert indices_at_times([2.0, 3.0], [0.0, -1.0]).tolist() == [0, 0]  # before the first frame
    assert indices_at_times([0.0, 1.0, 1.0, 2.0], [1.5]).tolist() == [2]  # duplicate stamps: the later
    with pytest.raises(ValueError):
        indices_at_times([], [0.0])


def test_duration_runs_to_the_end_of_the_last_frame():
    assert presentation_duration([0.0, 0.5, 1.0, 3.0]) == pytest.approx(5.0)  # last gap 2 s
    assert presentation_duration([2.0, 2.5]) == pytest.approx(1.0)  # from the first start
    assert presentation_duration([0.0, 1.0, 1.0]) == pytest.approx(2.0)  # last positive gap
    assert presentation_duration([5.0], native_fps=25.0) == pytest.approx(0.04)
    assert presentation_duration([5.0]) == 0.0


def test_regular_step_finds_constant_frame_rates_despite_rounding():
    assert regular_step(np.arange(10) / 25.0) == pytest.approx(0.04)
    mkv_stamps = np.round(np.arange(310) * 1000 / 30) / 1000  # mkv stores whole milliseconds
    assert regular_step(mkv_stamps) == pytest.approx(1 / 30)
    assert regular_step([0.0, 1.0, 2.0, 5.0]) is None
    assert regular_step([0.0, 0.04, 0.08, 0.124]) is None  # 4 ms late: more than rounding
    assert regular_step([1.0]) is None and regular_step([1.0, 1.0]) is None


def test_variable_frame_rate_is_sampled_in_time_not_in_index():
    starts = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 4.0]  # 6 frames in 0.6 s, then 2 s per frame; D = 6 s
    indices, times = select_frames(starts, num_frames=3)
    np.testing.assert_allclose(times, [1.0, 3.0, 5.0])
    assert indices.tolist() == [5, 6, 7]  # the frames shown at 1 s, 3 s, 5 s
    assert sample_indices(8, 8 / 6, num_frames=3).tolist() == [1, 4, 6]  # index bins: 0.1 s, 0.4 s, 2 s
    assert select_frames(starts, fps=0.5)[0].tolist() == [5, 6, 7]  # round(6 s * 0.5) = 3
    shifted, shifted_times = select_frames(np.asarray(starts) + 100.0, num_frames=3)  # first pts not 0
    assert shifted.tolist() == [5, 6, 7]
    np.testing.assert_allclose(shifted_times, times)


def test_every_frame_unless_a_rate_count_or_cap_says_otherwise():
    starts = [0.0, 0.1, 0.2, 3.0]
    indices, times = select_frames(starts)
    assert indices.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(times, starts)
    assert select_frames(starts, max_frames=2)[0].tolist() == [2, 3]  # targets 1.45 s and 4.35 s
    assert select_frames([7.0], fps=2.0)[0].tolist() == [0]  # one frame, unknown rate
    assert select_frames([7.0], num_frames=3)[0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("n_total, fps_native",
                         [(355, 19.62), (310, 30.0), (3, 30.0), (50, 10.0), (1000, 29.97)])
def test_constant_frame_rate_gives_the_index_bin_centres(n_total, fps_native):
    exact = np.arange(n_total) / fps_native
    rounded = np.round(exact * 1000) / 1000  # as an mkv stores them
    settings = [{"fps": f} for f in (0.5, 1.0, 2.0, 3.0, 7.5, 30.0)] + \
               [{"num_frames": k} for k in (1, 2, 7, 16, 32, 100, 400)] + [{"fps": 2.0, "max_frames": 4}, {}]
    for starts in (exact, rounded, exact + 12.345):
        for kwargs in settings:
            expected = sample_indices(n_total, fps_native, **kwargs)
            picked = select_frames(starts, native_fps=fps_native, **kwargs)[0]
            assert picked.tolist() == expected.tolist(), kwargs


def test_rounded_stamps_would_flip_ties_without_the_grid():
    """310 frames at 30 fps, 21 samples: target 10 is 155/30 s, frame 155 is stored at 5.167 s."""
    starts = np.round(np.arange(310) * 1000 / 30) / 1000
    times = sample_times(310 / 30, fps=2.0, n_frames=310)
    assert indices_at_times(starts, times, tolerance=0.0)[10] == 154  # raw stamps: the frame before
    assert select_frames(starts, fps=2.0, native_fps=30.0)[0][10] == 155  # on the grid: as by index
