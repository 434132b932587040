"""The board top (UART, protocol, hw.Accelerator) built with Verilator, talking to the host code of
sim/host.py: bit-exact with the golden engine, and bad or short frames get error replies (never a
hang). The Amaranth-simulator twin of these tests is test_board_e2e.py."""


import numpy as np
import pytest

from thresher.hw.board import frame
from thresher.model_tools import builtin as default, load_model, netgen
from thresher.model_tools.golden import run_integer
from thresher.sim.host import Board, open_transport, run_board, simulated_board

# every test here compiles the board top under Verilator
pytestmark = pytest.mark.slow

DIVISOR = 4


@pytest.fixture(scope="module")
def random_board():
    net = netgen.random_network(np.random.default_rng(11), (1, 6, 6),
                                (("conv", 4, 3, 1, 1), ("dense", 5)), name="uart-verilator")
    transport = simulated_board(net, pe=2, simd=4, divisor=DIVISOR, engine="verilator")
    yield net, transport
    transport.close()


def test_random_network_bit_exact(random_board):
    net, transport = random_board
    x = netgen.random_input(np.random.default_rng(12), net, 3)
    x[0].flat[:3] = [0, 255, 128]
    y, cycles = run_board(net, x, transport, return_cycles=True)
    np.testing.assert_array_equal(y, run_integer(net, x))
    assert (cycles > 0).all() and (cycles == cycles[0]).all()


def test_default_model_bit_exact():
    net = load_model(default.DEFAULT_MODEL)
    x, _ = default.digits_test()
    x = x[:2]
    with simulated_board(net, divisor=DIVISOR, engine="verilator") as transport:
        np.testing.assert_array_equal(run_board(net, x, transport), run_integer(net, x))


def error_reply(transport, raw, timeout=5.0):
    transport.flush_input()
    transport.write(raw)
    cmd, payload = Board(transport, timeout=timeout).read_frame()   # raises if no reply comes
    assert cmd == frame.CMD_ERROR
    return payload[0], payload[1]


def test_corrupted_crc_gets_error(random_board):
    net, transport = random_board
    n_in = int(np.prod(net.input_shape))
    good = frame.encode_frame(frame.CMD_INFER, bytes(n_in))
    for where in (-1, -2):          # either CRC byte
        bad = bytearray(good)
        bad[where] ^= 0x21
        assert error_reply(transport, bytes(bad)) == (frame.ERR_BAD_CRC, frame.CMD_INFER)
    x = netgen.random_input(np.random.default_rng(13), net, 1)   # and the board still serves
    np.testing.assert_array_equal(run_board(net, x, transport), run_integer(net, x))


def test_short_frame_times_out(random_board):
    net, transport = random_board
    n_in = int(np.prod(net.input_shape))
    good = frame.encode_frame(frame.CMD_INFER, bytes(n_in))
    before = transport.cycles
    assert error_reply(transport, good[:9]) == (frame.ERR_TIMEOUT, frame.CMD_INFER)
    # the bridge's inter-byte timeout (100 byte times in simulated_board), not the host's
    assert transport.cycles - before < 2 * 100 * 10 * DIVISOR
    x = netgen.random_input(np.random.default_rng(14), net, 1)
    np.testing.assert_array_equal(run_board(net, x, transport), run_integer(net, x))


def test_verilator_port_name():
    net = netgen.random_network(np.random.default_rng(11), (1, 6, 6),
                                (("conv", 4, 3, 1, 1), ("dense", 5)), name="uart-verilator")
    x = netgen.random_input(np.random.default_rng(15), net, 2)
    np.testing.assert_array_equal(run_board(net, x, "verilator"), run_integer(net, x))
    with open_transport("verilator", net) as transport:
        assert Board(transport).info().network_hash == frame.network_hash(net)
