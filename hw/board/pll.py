"""PLL parameters for iCE40 (SB_PLL40_*) and ECP5 (EHXPLLL), and the instances that use them.

:func:`ice40_pll` and :func:`ecp5_pll` search the divider space the way ``icepll`` / ``ecppll`` do
and return the settings whose output is closest to the request (ties go to the lower frequency);
``fout_mhz`` in the result is what the PLL really makes, which is what timing must be met at.
"""

from dataclasses import dataclass

from amaranth import *

__all__ = ["ICE40PLL", "ECP5PLL", "ice40_pll", "ecp5_pll", "pll_instance"]


@dataclass(frozen=True)
class ICE40PLL:
    fin_mhz: float
    fout_mhz: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    def parameters(self) -> dict:
        return {"p_FEEDBACK_PATH": "SIMPLE", "p_DIVR": self.divr, "p_DIVF": self.divf,
                "p_DIVQ": self.divq, "p_FILTER_RANGE": self.filter_range}


@dataclass(frozen=True)
class ECP5PLL:
    fin_mhz: float
    fout_mhz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def vco_mhz(self) -> float:
        return self.fout_mhz * self.clkop_div

    def parameters(self) -> dict:
        return {"p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED",
                "p_STDBY_ENABLE": "DISABLED", "p_DPHASE_SOURCE": "DISABLED",
                "p_OUTDIVIDER_MUXA": "DIVA", "p_OUTDIVIDER_MUXB": "DIVB",
                "p_OUTDIVIDER_MUXC": "DIVC", "p_OUTDIVIDER_MUXD": "DIVD",
                "p_CLKI_DIV": self.clki_div, "p_CLKOP_ENABLE": "ENABLED",
                "p_CLKOP_DIV": self.clkop_div, "p_CLKOP_CPHASE": self.clkop_div - 1,
                "p_CLKOP_FPHASE": 0, "p_FEEDBK_PATH": "CLKOP", "p_CLKFB_DIV": self.clkfb_div,
                "a_FREQUENCY_PIN_CLKI": f"{self.fin_mhz:g}",
                "a_FREQUENCY_PIN_CLKOP": f"{self.fout_mhz:g}",
                "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8",
                "a_MFG_ENABLE_FILTEROPAMP": "1", "a_MFG_GMCREF_SEL": "2"}


def _check(fin_mhz, fout_mhz):
    if not (fin_mhz > 0 and fout_mhz > 0):
        raise ValueError(f"PLL frequencies must be positive, not {fin_mhz!r} -> {fout_mhz!r} MHz")


def _best(candidates, fout_mhz, what):
    if not candidates:
        raise ValueError(f"no {what} PLL setting makes {fout_mhz:g} MHz")
    return min(candidates, key=lambda c: (abs(c.fout_mhz - fout_mhz), c.fout_mhz))


def ice40_pll(fin_mhz: float, fout_mhz: float) -> ICE40PLL:
    """SB_PLL40 settings (simple feedback): ``fout = fin * (DIVF+1) / ((DIVR+1) * 2**DIVQ)``,
    PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz (iCE40 family data sheet)."""
    _check(fin_mhz, fout_mhz)
    if not 16 <= fout_mhz <= 275:
        raise ValueError(f"an iCE40 PLL makes 16..275 MHz, not {fout_mhz:g} MHz")
    found = []
    for divr in range(16):
        pfd = fin_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divq in range(1, 7):
            divf = round(fout_mhz * (1 << divq) / pfd) - 1
            for f in (divf, divf + 1):
                if not 0 <= f <= 127:
                    continue
                vco = pfd * (f + 1)
                if not 533 <= vco <= 1066:
                    continue
                filt = next(i for i, lim in enumerate((17, 26, 44, 66, 101), 1) if pfd < lim) \
                    if pfd < 101 else 6
                found.append(ICE40PLL(fin_mhz, vco / (1 << divq), divr, f, divq, filt))
    return _best(found, fout_mhz, "iCE40")


def ecp5_pll(fin_mhz: float, fout_mhz: float) -> ECP5PLL:
    """EHXPLLL settings with CLKOP feedback: ``fout = fin / CLKI_DIV * CLKFB_DIV``,
    PFD 3.125..400 MHz, VCO ``fout * CLKOP_DIV`` 400..800 MHz, output 3.125..400 MHz."""
    _check(fin_mhz, fout_mhz)
    if not 3.125 <= fout_mhz <= 400:
        raise ValueError(f"an ECP5 PLL makes 3.125..400 MHz, not {fout_mhz:g} MHz")
    found = []
    for clki in range(1, 129):
        pfd = fin_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        fb = round(fout_mhz / pfd)
        for clkfb in (fb - 1, fb, fb + 1):
            if not 1 <= clkfb <= 80:
                continue
            fout = pfd * clkfb
            clkop = max(1, min(128, round(600 / fout)))   # VCO near the middle of its range
            if 400 <= fout * clkop <= 800:
                found.append(ECP5PLL(fin_mhz, fout, clki, clkfb, clkop))
    return _best(found, fout_mhz, "ECP5")


def pll_instance(settings, clk_in, clk_out, locked, *, pad=False):
    """The PLL primitive for ``settings``. ``clk_in`` is a clock signal, or with ``pad=True`` on
    iCE40 the raw I/O port of the PLL-capable clock pad (SB_PLL40_PAD)."""
    if isinstance(settings, ICE40PLL):
        if pad:
            return Instance("SB_PLL40_PAD", io_PACKAGEPIN=clk_in, o_PLLOUTGLOBAL=clk_out,
                            o_LOCK=locked, i_RESETB=C(1, 1), i_BYPASS=C(0, 1),
                            **settings.parameters())
        return Instance("SB_PLL40_CORE", i_REFERENCECLK=clk_in, o_PLLOUTGLOBAL=clk_out,
                        o_LOCK=locked, i_RESETB=C(1, 1), i_BYPASS=C(0, 1),
                        **settings.parameters())
    if isinstance(settings, ECP5PLL):
        return Instance("EHXPLLL", i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
                        o_LOCK=locked, i_RST=C(0, 1), i_STDBY=C(0, 1),
                        i_PHASESEL0=C(0, 1), i_PHASESEL1=C(0, 1), i_PHASEDIR=C(1, 1),
                        i_PHASESTEP=C(1, 1), i_PHASELOADREG=C(1, 1), i_PLLWAKESYNC=C(0, 1),
                        i_ENCLKOP=C(0, 1), **settings.parameters())
    raise TypeError(f"not PLL settings: {settings!r}")
