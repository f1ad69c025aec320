"""Energy: what a training run used, in joules, kWh and grams of CO2 — measured or estimated, and which.

**Measured.** Intel CPUs count the energy of each package in RAPL counters
(Running Average Power Limit), which Linux shows as
``/sys/class/powercap/intel-rapl:<n>/energy_uj`` (microjoules, wrapping to 0
at ``max_energy_range_uj``). Reading them before and after a run gives the
CPU package's energy (not the memory's, disk's or power supply's). Many
machines hide them: virtual machines, containers, and recent kernels that make
them readable by root only.

**Estimated.** Without counters the energy is an estimate, in one of two ways:

* from the work done: a transformer's training costs about
      C = 6 N D + 6 n_layer T d D   FLOPs                 (Kaplan et al., 2020)
  for N non-embedding parameters, D tokens, context T and width d (6 N per
  token for the matrix products, forward 2 and backward 4; the second term is
  attention's Q K^T and its backward); divided by a stated efficiency in FLOPs
  per joule;
* from the time taken: wall seconds x a stated device power in watts.

Then kWh = J / 3.6e6 and CO2 = kWh x the grid's intensity (grams of CO2
equivalent per kWh). The default 429 g/kWh is the intensity Patterson et al.
(2021) used for GPT-3's 1,287 MWh and 552 t CO2e, so our figures sit beside
theirs on the same scale. ``EnergyMeter`` measures when it can and always says
which method gave the number.
"""
import dataclasses
import glob
import os
import re
import time

from minillm.scaling import training_flops

JOULES_PER_KWH = 3.6e6
GRID_G_PER_KWH = 429.0            # Patterson et al. (2021), the grid behind GPT-3's training
CPU_WATTS = 20.0                  # two cores of a server CPU, about its TDP per core x 2 (stated, not measured)
CPU_FLOPS_PER_JOULE = 1e10        # an AVX-512 server core: ~100 GFLOP/s fp32 peak at ~10 W (stated)
RAPL_ROOT = "/sys/class/powercap"


# ---------------------------------------------------------------- estimates

def transformer_training_flops(n_params, n_tokens, n_layer=0, block_size=0, n_embd=0):
    """C = 6 N D + 6 n_layer T d D: the matrix products (``scaling.training_flops``) plus
    attention (Kaplan et al., 2020); without the shape, 6 N D alone.

    >>> f"{transformer_training_flops(175e9, 300e9):.3e}"                    # GPT-3's 6 N D
    '3.150e+23'
    >>> f"{transformer_training_flops(175e9, 300e9, 96, 2048, 12288):.3e}"   # + attention
    '3.193e+23'
    """
    attention = 6.0 * int(n_layer) * int(block_size) * int(n_embd) * float(n_tokens)
    return training_flops(n_params, n_tokens) + attention


def energy_from_flops(flops, flops_per_joule=CPU_FLOPS_PER_JOULE):
    """Joules = FLOPs / (FLOPs per joule)."""
    if not flops_per_joule > 0:
        raise ValueError(f"flops_per_joule must be positive, got {flops_per_joule}")
    return float(flops) / float(flops_per_joule)


def energy_from_time(seconds, watts=CPU_WATTS):
    """Joules = seconds x watts."""
    if not watts > 0:
        raise ValueError(f"watts must be positive, got {watts}")
    return float(seconds) * float(watts)


def kwh(joules):
    """Kilowatt-hours: J / 3.6e6."""
    return float(joules) / JOULES_PER_KWH


def co2_grams(joules, grid_g_per_kwh=GRID_G_PER_KWH):
    """Grams of CO2 equivalent: kWh x grid intensity (g/kWh)."""
    return kwh(joules) * float(grid_g_per_kwh)


# ---------------------------------------------------------------- RAPL

def read_rapl(root=RAPL_ROOT):
    """{package: (energy_uj, max_energy_range_uj)} for each readable top-level RAPL domain, or None.

    Only ``intel-rapl:<n>`` (a CPU package) is read, not its subdomains
    ``intel-rapl:<n>:<m>`` (cores, DRAM), which the package already contains.
    """
    readings = {}
    for folder in sorted(glob.glob(os.path.join(root, "intel-rapl:*"))):
        if not re.fullmatch(r"intel-rapl:\d+", os.path.basename(folder)):
            continue
        try:
            with open(os.path.join(folder, "energy_uj")) as f:
                energy = int(f.read())
            with open(os.path.join(folder, "max_energy_range_uj")) as f:
                wrap = int(f.read())
        except (OSError, ValueError):
            continue                                   # hidden (permissions) or absent
        readings[os.path.basename(folder)] = (energy, wrap)
    return readings or None


def rapl_joules_between(before, after):
    """Joules used between two ``read_rapl`` readings, summed over packages, counting wrap-arounds once."""
    total_uj = 0
    for package, (start, wrap) in before.items():
        end = after[package][0]
        total_uj += end - start if end >= start else end + wrap - start
    return total_uj / 1e6


# ---------------------------------------------------------------- the meter

@dataclasses.dataclass
class EnergyReport:
    """One run's energy and how it was obtained (``method``: "measured (RAPL)",
    "estimated from FLOPs" or "estimated from wall time"), with the assumptions."""
    joules: float
    method: str
    seconds: float
    flops: float = None
    assumption: str = ""
    grid_g_per_kwh: float = GRID_G_PER_KWH

    @property
    def kwh(self):
        return kwh(self.joules)

    @property
    def co2_grams(self):
        return co2_grams(self.joules, self.grid_g_per_kwh)

    def __str__(self):
        flops = f", {self.flops:.3g} FLOPs" if self.flops else ""
        return (f"energy {self.joules:,.0f} J = {self.kwh:.3g} kWh = {self.co2_grams:.3g} g CO2e at "
                f"{self.grid_g_per_kwh:g} g/kWh; {self.method}{' (' + self.assumption + ')' if self.assumption else ''}"
                f"; {self.seconds:.1f} s{flops}")


class EnergyMeter:
    """``with EnergyMeter() as meter: train()``, then ``meter.report(flops)``.

    Reads RAPL at entry and exit when it can; otherwise ``report`` estimates:
    from ``flops`` at ``flops_per_joule`` if given, else from wall time at ``watts``.
    """

    def __init__(self, watts=CPU_WATTS, flops_per_joule=CPU_FLOPS_PER_JOULE,
                 grid_g_per_kwh=GRID_G_PER_KWH, rapl_root=RAPL_ROOT):
        self.watts, self.flops_per_joule = watts, flops_per_joule
        self.grid_g_per_kwh, self.rapl_root = grid_g_per_kwh, rapl_root
        self.start = self.end = self.rapl_start = self.rapl_end = None

    def __enter__(self):
        self.rapl_start = read_rapl(self.rapl_root)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.end = time.perf_counter()
        self.rapl_end = read_rapl(self.rapl_root)
        return False

    @property
    def seconds(self):
        if self.start is None or self.end is None:
            raise RuntimeError("the meter has not run: use it as `with EnergyMeter() as meter: ...`")
        return self.end - self.start

    @property
    def measured(self):
        """True when RAPL counters were readable at both ends (for the same packages)."""
        return (self.rapl_start is not None and self.rapl_end is not None
                and set(self.rapl_start) == set(self.rapl_end))

    def report(self, flops=None):
        """An ``EnergyReport``: measured if RAPL was readable, else estimated (saying how)."""
        seconds = self.seconds
        common = dict(seconds=seconds, flops=flops, grid_g_per_kwh=self.grid_g_per_kwh)
        if self.measured:
            joules = rapl_joules_between(self.rapl_start, self.rapl_end)
            return EnergyReport(joules, "measured (RAPL)", assumption="CPU packages only", **common)
        if flops:   # the other estimate alongside: they disagree as far as the run is from peak speed
            by_time = energy_from_time(seconds, self.watts)
            return EnergyReport(energy_from_flops(flops, self.flops_per_joule), "estimated from FLOPs",
                                assumption=f"{self.flops_per_joule:.3g} FLOP/J stated; no readable RAPL; "
                                           f"wall time x {self.watts:g} W would give {by_time:,.0f} J",
                                **common)
        return EnergyReport(energy_from_time(seconds, self.watts), "estimated from wall time",
                            assumption=f"{self.watts:g} W stated; no readable RAPL", **common)
