import pytest

from thresher.hw.board import frame
from thresher.hw.board.pll import ecp5_pll, ice40_pll


def test_crc16_check_value():
    assert frame.crc16(b"123456789") == 0x29B1          # CRC-16/CCITT-FALSE check value
    f = frame.encode_frame(frame.CMD_INFER, b"\x01\x02")
    assert f[:2] == frame.SYNC and frame.crc16(f[2:]) == 0  # residue 0 over CMD..CRC
    assert frame.CRC.residue() == 0                       # what the gateware's check relies on


def test_pack_values():
    data = frame.pack_values([-3, 0, 7], 4, True)
    assert frame.unpack_values(data, 4, True).tolist() == [-3, 0, 7]
    assert frame.pack_values([300], 9, False) == (300).to_bytes(2, "little")
    with pytest.raises(ValueError, match="does not fit"):
        frame.pack_values([8], 4, True)


def test_info_roundtrip():
    info = frame.Info(8, False, 12, True, 784, 10, 16, 16, 100_000_000, 0xDEADBEEF)
    assert frame.Info.decode(info.encode()) == info
    assert info.request_length == 784 and info.reply_length == 10 * 2 + 4


def test_ice40_pll():
    # icepll -i 12 -o 36: DIVR 0, DIVF 47, DIVQ 4, FILTER_RANGE 1
    p = ice40_pll(12, 36)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.fout_mhz) == (0, 47, 4, 1, 36.0)
    for f in (16, 25, 42, 48, 60, 100):
        p = ice40_pll(12, f)
        pfd = 12 / (p.divr + 1)
        vco = pfd * (p.divf + 1)
        assert 10 <= pfd <= 133 and 533 <= vco <= 1066
        assert p.fout_mhz == pytest.approx(vco / 2 ** p.divq)
        assert abs(p.fout_mhz - f) / f < 0.02
    with pytest.raises(ValueError, match="16..275"):
        ice40_pll(12, 8)


def test_ecp5_pll():
    p = ecp5_pll(25, 100)
    assert p.fout_mhz == 100 and 400 <= p.vco_mhz <= 800
    assert p.parameters()["p_CLKOP_CPHASE"] == p.clkop_div - 1
    for f in (50, 75, 125, 133, 48):
        p = ecp5_pll(25, f)
        assert p.fout_mhz == pytest.approx(25 / p.clki_div * p.clkfb_div)
        assert 400 <= p.vco_mhz <= 800 and abs(p.fout_mhz - f) / f < 0.03
