"""benchmarks.interference: the alternating schedule, the load process and the summary."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from benchmarks.interference import (
    ALONE,
    LOADED,
    Load,
    Window,
    measure,
    schedule,
    spin,
    summarize,
)


def test_schedule_alternates_which_kind_goes_first() -> None:
    assert schedule(3) == [
        (0, ALONE),
        (0, LOADED),
        (1, LOADED),
        (1, ALONE),
        (2, ALONE),
        (2, LOADED),
    ]


def test_a_load_asks_for_its_burst_over_its_period_in_cores() -> None:
    assert Load(burst_s=0.0006, period_s=1 / 96).cores == pytest.approx(0.0576)


def test_summary_takes_medians_and_relates_the_loss_to_the_load_share() -> None:
    rates = {ALONE: [10.0, 8.0, 9.0], LOADED: [8.0, 7.0, 9.5]}
    windows = [Window(0, kind, rate, None) for kind, values in rates.items() for rate in values]
    summary = summarize(windows, Load(burst_s=0.001, period_s=0.01), cores=2)
    assert (summary.alone, summary.loaded) == (9.0, 8.0)
    assert summary.ratio == pytest.approx(8 / 9)
    assert summary.load_share == pytest.approx(0.05)
    assert summary.amplification == pytest.approx((1 - 8 / 9) / 0.05)


def test_spin_stops_when_told() -> None:
    stop = threading.Event()
    spinner = threading.Thread(target=spin, args=(Load(0.0005, 0.002), stop))
    spinner.start()
    time.sleep(0.05)
    stop.set()
    spinner.join(timeout=2)
    assert not spinner.is_alive()


def test_measure_alternates_windows_and_leaves_no_load_process_behind() -> None:
    calls = []

    def call() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.01)

    windows = measure(call, items_per_call=4, load=Load(0.0002, 0.01), rounds=2, window_s=0.2)
    assert [(w.round, w.kind) for w in windows] == schedule(2)
    for window in windows:
        # about 0.2 s / 10 ms calls, 4 items each: far from zero, bounded by the sleep
        assert 40 <= window.items_per_s <= 400
        assert window.stolen_cores is None or window.stolen_cores >= 0
    assert len(calls) >= 4 * 10
    assert multiprocessing.active_children() == []
