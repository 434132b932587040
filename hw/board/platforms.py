"""The boards thresher builds for: amaranth-boards platforms plus what they lack.

:data:`BOARDS` maps a board name to a :class:`BoardSpec`; :func:`make_platform` returns a fresh
platform with a ``uart`` resource on every board (pins from ``constraints/boards.json`` where
amaranth-boards has none) and the board clock thresher expects.
"""

import json
from dataclasses import dataclass, field
from importlib.resources import files

from amaranth.build import Attrs, Pins, Resource, Subsignal

from ...model_tools.errors import ThresherError

__all__ = ["BoardSpec", "BOARDS", "make_platform", "spec_of_platform", "board_spec",
           "CONSTRAINTS"]

#: pins and clocks amaranth-boards lacks, shipped as package data (``constraints/boards.json``)
CONSTRAINTS = files(__package__.rsplit(".", 2)[0] + ".constraints") / "boards.json"

_UP5K = {"ICESTORM_LC": 5280, "ICESTORM_RAM": 30, "ICESTORM_DSP": 8, "ICESTORM_SPRAM": 4,
         "ICESTORM_PLL": 1}
_ECP5_85F = {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "DP16KD": 208, "MULT18X18D": 156,
             "EHXPLLL": 4}
_ECP5_25F = {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "DP16KD": 56, "MULT18X18D": 28,
             "EHXPLLL": 2}


@dataclass(frozen=True)
class BoardSpec:
    """A board: its amaranth-boards platform, device, oscillator and resources (nextpnr's names).

    ``logic``, ``bram``, ``dsp`` name the resources that :func:`hw.resources.array_candidates`
    budgets; ``bram_bits`` is the size of one block RAM; ``program`` the openFPGALoader arguments
    before the bitstream. ``uart_bridge`` is the USB-UART chip behind the board's ``uart``
    resource and ``uart_max_baud`` the fastest rate it holds (its datasheet's); a build runs the
    UART at the fastest standard rate up to it that its clock makes
    (:func:`hw.board.uart.fastest_baud`). Boards whose UART is on header pins (an adapter of the
    user's choosing) and bridges whose limit is not documented keep 115,200 baud.
    """

    name: str
    module: str
    platform: str
    family: str
    device: str
    clock_mhz: float
    resources: dict
    logic: str
    bram: str
    dsp: str
    bram_bits: int
    bitstream: str
    program: tuple
    note: str = ""
    platform_attrs: dict = field(default_factory=dict)
    uart_bridge: str = "unknown"
    uart_max_baud: int = 115_200

    @property
    def multipliers(self) -> int:
        """The device's hard multipliers (``dsp`` blocks): what a build gives the accelerator's
        wide products."""
        return int(self.resources.get(self.dsp, 0))

    def describe(self) -> dict:
        return {"board": self.name, "platform": f"amaranth_boards.{self.module}.{self.platform}",
                "family": self.family, "device": self.device, "clock_mhz": self.clock_mhz,
                "resources": dict(self.resources), "bitstream": self.bitstream,
                "uart_bridge": self.uart_bridge, "uart_max_baud": self.uart_max_baud,
                "note": self.note}


BOARDS = {b.name: b for b in [
    BoardSpec("icebreaker", "icebreaker", "ICEBreakerPlatform", "ice40", "iCE40UP5K-SG48", 12.0,
              _UP5K, "ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", 4096, "top.bin",
              ("-b", "ice40_generic"),
              uart_bridge="FT2232H (channel B)", uart_max_baud=12_000_000),
    BoardSpec("upduino-v3", "upduino_v3", "UpduinoV3Platform", "ice40", "iCE40UP5K-SG48", 12.0,
              _UP5K, "ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", 4096, "top.bin",
              ("-b", "ice40_generic", "-c", "ft232"),
              note="clock: SB_HFOSC / 4 (12 MHz); UART on header pins 23 (rx) / 25 (tx), "
                   "see constraints/boards.json",
              platform_attrs={"hfosc_div": 2},
              uart_bridge="a USB-UART adapter on the header", uart_max_baud=115_200),
    BoardSpec("icesugar", "icesugar", "ICESugarPlatform", "ice40", "iCE40UP5K-SG48", 12.0,
              _UP5K, "ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_DSP", 4096, "top.bin",
              ("-c", "cmsisdap", "--vid", "0x1d50", "--pid", "0x602b"),
              note="or copy top.bin to the iCELink USB drive",
              # the iCELink's USB CDC UART (STM32F1 firmware) documents no rate above 115,200
              uart_bridge="iCELink (STM32F1, USB CDC)", uart_max_baud=115_200),
    BoardSpec("ulx3s-85f", "ulx3s", "ULX3S_85F_Platform", "ecp5", "LFE5U-85F-6BG381C", 25.0,
              _ECP5_85F, "TRELLIS_COMB", "DP16KD", "MULT18X18D", 18432, "top.bit",
              ("-b", "ulx3s"), uart_bridge="FT231X", uart_max_baud=3_000_000),
    BoardSpec("ulx3s-25f", "ulx3s", "ULX3S_25F_Platform", "ecp5", "LFE5U-25F-6BG381C", 25.0,
              _ECP5_25F, "TRELLIS_COMB", "DP16KD", "MULT18X18D", 18432, "top.bit",
              ("-b", "ulx3s"), uart_bridge="FT231X", uart_max_baud=3_000_000),
    BoardSpec("orangecrab-85f", "orangecrab_r0_2", "OrangeCrabR0_2_85FPlatform", "ecp5",
              "LFE5U-85F-8MG285C", 48.0, _ECP5_85F, "TRELLIS_COMB", "DP16KD", "MULT18X18D",
              18432, "top.bit", ("-b", "orangeCrab"),
              note="UART on Feather pins 0 (rx) / 1 (tx), see constraints/boards.json",
              uart_bridge="a USB-UART adapter on the Feather pins", uart_max_baud=115_200),
]}


def _extra_resources(board: str) -> list:
    try:
        extra = json.loads(CONSTRAINTS.read_text()).get(board, {})
    except (OSError, ValueError) as e:
        raise ThresherError(f"cannot read board constraints {CONSTRAINTS}: {e}") from None
    resources = []
    if "uart" in extra:
        u = extra["uart"]
        resources.append(Resource(
            "uart", 0,
            Subsignal("rx", Pins(u["rx"], dir="i"), Attrs(**u.get("rx_attrs", {}))),
            Subsignal("tx", Pins(u["tx"], dir="o")),
            Attrs(**u.get("attrs", {}))))
    return resources


def make_platform(board: str):
    """A new amaranth-boards platform for ``board`` with thresher's additions."""
    spec = board_spec(board)
    import importlib
    module = importlib.import_module(f"amaranth_boards.{spec.module}")
    platform = getattr(module, spec.platform)()
    for k, v in spec.platform_attrs.items():
        setattr(platform, k, v)
    extra = _extra_resources(board)
    if extra:
        platform.add_resources(extra)
    return platform


def spec_of_platform(platform) -> BoardSpec | None:
    """The :class:`BoardSpec` whose amaranth-boards platform ``platform`` is (by class), if any."""
    for spec in BOARDS.values():
        if type(platform).__name__ == spec.platform and \
                type(platform).__module__ == f"amaranth_boards.{spec.module}":
            return spec
    return None


def board_spec(board: str) -> BoardSpec:
    if board not in BOARDS:
        raise ThresherError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
    return BOARDS[board]
