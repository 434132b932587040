"""Resource decisions made in Python: memory styles, stored widths, DSP lanes (no synthesis)."""

import pytest

from thresher import model_tools
from thresher.hw.accelerator import Accelerator, pack_shift
from thresher.hw.devices import BLOCK_RAM, LOGIC, bram_blocks, memory_style
from thresher.hw.plan import Plan

from paths import DEFAULT  # noqa: E402
from paths import TFC  # noqa: E402


def test_memory_style_puts_shallow_wide_roms_in_logic():
    assert memory_style(184, 6, rom=True) == LOGIC           # the default model's threshold ROM
    assert memory_style(128, 136, rom=True) == BLOCK_RAM      # its weight ROM at 4 x 8
    assert memory_style(48, 3, rom=False) == LOGIC            # a 3-word output RAM
    assert memory_style(16, 256, rom=False) == BLOCK_RAM


def test_bram_blocks_take_the_best_aspect_ratio():
    assert bram_blocks(16, 256) == 1 and bram_blocks(8, 784) == 2 and bram_blocks(1, 2048) == 1
    assert bram_blocks(36, 512, "ecp5") == 1 and bram_blocks(72, 600, "ecp5") == 4
    with pytest.raises(ValueError, match="family"):
        bram_blocks(8, 8, "gowin")


def test_default_model_widths_and_dsp_lanes():
    net = model_tools.load_model(str(DEFAULT))
    plan = Plan(net, 4, 8)
    assert plan.im2col and plan.tap_width == 9 and plan.act_width == 9
    assert plan.feat_width == 3                               # later maps are 0..3
    acc = Accelerator(net, pe=4, simd=8)
    assert acc.dsp_lanes == 8 and acc.pack_shift == 12        # 16 of the 32 lanes on 8 DSPs
    assert Accelerator(net, pe=4, simd=8, dsp_lanes=0).dsp_lanes == 0


def test_small_products_never_use_dsps():
    net = model_tools.load_model(str(TFC))
    assert Accelerator(net, pe=8, simd=8).dsp_lanes == 0      # 2 x 2-bit products


def test_pack_shift_needs_room_in_16_bits():
    net = model_tools.load_model(str(DEFAULT))
    assert pack_shift(Plan(net, 4, 8)) == 12                  # |w| <= 7, a <= 255: |w a| < 2^11
