// thresher's Verilator UART harness: a board top (``hw.board.top.UartBridge``) kept alive between
// ctypes calls, its serial lines driven and decoded here so that Python never runs per cycle.
//
// Built into a shared library with the Verilated design (prefix ``Vdut``, top ports ``clk``,
// ``rst``, ``rx``, ``tx``) by ``sim/verilator_uart.py``. One handle is one board:
//
//   thresher_uart_open(divisor)        a new model, reset for two cycles, rx idle (high)
//   thresher_uart_send(h, data, n)     queue bytes for rx (sent back to back, 8N1, ``divisor``
//                                      clocks per bit, while the clock runs)
//   thresher_uart_receive(h, out, max_bytes, max_cycles)
//                                      run the clock (sending the queued bytes meanwhile) and
//                                      decode tx into ``out`` until ``max_bytes`` arrived or
//                                      ``max_cycles`` ran; returns the number of bytes decoded
//   thresher_uart_pending(h)           queued bytes not yet completely sent
//   thresher_uart_cycles(h)            clock cycles simulated so far
//   thresher_uart_close(h)
//
// tx is decoded as a UART receiver would: a falling edge starts a byte, each bit is sampled in its
// middle (1.5, 2.5, ... bit times after the edge) and a byte whose stop bit is low is dropped (a
// framing error; the decoder then waits for the line to go high again).

#include <cstdint>
#include <deque>
#include <memory>

#include "verilated.h"
#include "Vdut.h"

namespace {

struct Board {
    VerilatedContext ctx;
    std::unique_ptr<Vdut> top;
    int64_t divisor;
    uint64_t cycles = 0;

    // rx: the byte being sent (10 bits: start, 8 data, stop) and the queue behind it
    std::deque<uint8_t> queue;
    bool sending = false;
    uint16_t frame_bits = 0;
    int bit_index = 0;
    int64_t bit_clock = 0;

    // tx decoder
    enum { IDLE, DATA, WAIT_HIGH } rx_state = IDLE;
    int64_t since_edge = 0;
    int sampled = 0;
    uint8_t byte = 0;

    explicit Board(int64_t div) : divisor(div) {
        ctx.commandArgs(0, (const char **)nullptr);
        top.reset(new Vdut{&ctx, "board"});
        top->rx = 1;
        top->rst = 1;
        tick();
        tick();
        top->rst = 0;
    }
    ~Board() { top->final(); }

    void tick() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ++cycles;
    }

    int rx_level() {
        if (!sending) {
            if (queue.empty()) return 1;
            uint8_t b = queue.front();
            queue.pop_front();
            frame_bits = uint16_t((1u << 9) | (uint32_t(b) << 1));  // start 0, data LSB first, stop 1
            bit_index = 0;
            bit_clock = 0;
            sending = true;
        }
        int level = (frame_bits >> bit_index) & 1;
        if (++bit_clock == divisor) {
            bit_clock = 0;
            if (++bit_index == 10) sending = false;
        }
        return level;
    }

    // One clock cycle; returns 0..255 for a byte completed on tx in this cycle, else -1.
    int step() {
        top->rx = rx_level();
        tick();
        int tx = top->tx & 1;
        switch (rx_state) {
        case IDLE:
            if (!tx) { rx_state = DATA; since_edge = 0; sampled = 0; byte = 0; }
            return -1;
        case DATA:
            ++since_edge;
            if (since_edge == (3 * divisor) / 2 + sampled * divisor) {
                if (sampled < 8) {
                    byte |= uint8_t(tx << sampled);
                    ++sampled;
                } else {                       // the stop bit
                    rx_state = tx ? IDLE : WAIT_HIGH;
                    return tx ? byte : -1;
                }
            }
            return -1;
        case WAIT_HIGH:
            if (tx) rx_state = IDLE;
            return -1;
        }
        return -1;
    }
};

}  // namespace

extern "C" {

int thresher_uart_abi_version() { return 1; }

void *thresher_uart_open(int64_t divisor) {
    if (divisor < 2) return nullptr;
    return new Board(divisor);
}

void thresher_uart_close(void *h) { delete static_cast<Board *>(h); }

void thresher_uart_send(void *h, const uint8_t *data, int64_t n) {
    Board *b = static_cast<Board *>(h);
    for (int64_t i = 0; i < n; ++i) b->queue.push_back(data[i]);
}

int64_t thresher_uart_pending(void *h) {
    Board *b = static_cast<Board *>(h);
    return int64_t(b->queue.size()) + (b->sending ? 1 : 0);
}

uint64_t thresher_uart_cycles(void *h) { return static_cast<Board *>(h)->cycles; }

int64_t thresher_uart_receive(void *h, uint8_t *out, int64_t max_bytes, int64_t max_cycles) {
    Board *b = static_cast<Board *>(h);
    int64_t got = 0;
    for (int64_t c = 0; c < max_cycles && got < max_bytes; ++c) {
        int v = b->step();
        if (v >= 0) out[got++] = uint8_t(v);
    }
    return got;
}

}  // extern "C"
