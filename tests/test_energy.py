"""Tests for minillm.energy: the estimates equal their formulas; RAPL is read, summed and unwrapped."""
import math

import pytest

from minillm.energy import (EnergyMeter, co2_grams, energy_from_flops, energy_from_time, kwh, read_rapl,
                            rapl_joules_between, transformer_training_flops)


def test_estimates_equal_their_formulas():
    flops = transformer_training_flops(1_000_000, 2_000_000, n_layer=3, block_size=64, n_embd=96)
    assert flops == 6 * 1_000_000 * 2_000_000 + 6 * 3 * 64 * 96 * 2_000_000
    assert transformer_training_flops(175e9, 300e9) == pytest.approx(3.15e23)
    assert energy_from_flops(5e12, 1e10) == 500.0
    assert energy_from_time(90.0, 20.0) == 1800.0
    assert kwh(3.6e6) == 1.0
    assert co2_grams(7.2e6, 429.0) == pytest.approx(858.0)
    # Patterson et al. (2021): GPT-3, 1,287 MWh at 0.429 kg/kWh -> 552 t CO2e
    assert co2_grams(1287e6 * 3600, 429.0) / 1e6 == pytest.approx(552.1, abs=0.1)


def _fake_rapl(root, packages):
    for name, (energy, wrap) in packages.items():
        folder = root / name
        folder.mkdir(exist_ok=True)
        (folder / "energy_uj").write_text(f"{energy}\n")
        (folder / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_counters_are_summed_over_packages_and_unwrapped(tmp_path):
    _fake_rapl(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (9_500_000, 10_000_000),
                          "intel-rapl:0:0": (5, 10)})               # a subdomain: not counted again
    before = read_rapl(str(tmp_path))
    assert set(before) == {"intel-rapl:0", "intel-rapl:1"}
    _fake_rapl(tmp_path, {"intel-rapl:0": (4_000_000, 10_000_000), "intel-rapl:1": (500_000, 10_000_000)})
    after = read_rapl(str(tmp_path))
    assert rapl_joules_between(before, after) == pytest.approx(3.0 + 1.0)       # 3 J, and 1 J across the wrap


def test_meter_says_measured_when_rapl_is_readable(tmp_path):
    _fake_rapl(tmp_path, {"intel-rapl:0": (0, 10 ** 12)})
    with EnergyMeter(rapl_root=str(tmp_path)) as meter:
        _fake_rapl(tmp_path, {"intel-rapl:0": (2_500_000, 10 ** 12)})
    report = meter.report(flops=1e12)
    assert report.method == "measured (RAPL)" and report.joules == pytest.approx(2.5)


def test_meter_estimates_and_says_so_without_rapl(tmp_path):
    with EnergyMeter(watts=20.0, flops_per_joule=1e10, rapl_root=str(tmp_path / "none")) as meter:
        pass
    assert read_rapl(str(tmp_path / "none")) is None
    by_flops = meter.report(flops=3e12)
    assert by_flops.method == "estimated from FLOPs" and by_flops.joules == 300.0
    assert "1e+10 FLOP/J" in str(by_flops) and "no readable RAPL" in str(by_flops)
    by_time = meter.report()
    assert by_time.method == "estimated from wall time"
    assert math.isclose(by_time.joules, 20.0 * meter.seconds)


def test_errors():
    with pytest.raises(ValueError, match="flops_per_joule must be positive"):
        energy_from_flops(1.0, 0)
    with pytest.raises(RuntimeError, match="has not run"):
        EnergyMeter().report()
