// thresher's Verilator batch harness: streams a whole batch of inferences through one design.
//
// Built into a shared library together with the Verilated model (prefix ``Vdut``) by
// ``sim/toolchain.py`` for ``sim/verilator.py``, and called through ctypes once per batch, so
// Python never runs per cycle (only a progress callback, a few times a second).
// ``thresher_dut.h`` (generated next to this file) describes the ports:
//
//   DUT_IN_WIDTH, DUT_OUT_WIDTH   payload widths in bits (1..64)
//   DUT_OUT_SIGNED                1 if ``o.payload`` is signed (sign-extended here)
//   DUT_HAS_BUSY, DUT_HAS_CYCLES  1 if the design has the ``busy`` / ``cycles`` outputs
//   DUT_TRACE                     0 none, 1 VCD, 2 FST (needs a Verilator build with --trace[-fst])
//
// The design is wrapped by a generated Verilog module (``thresher_harness_top``, see
// ``sim/verilator.py``) whose ports have fixed names:
//
//   clk, rst                      the ``sync`` domain
//   in_payload/valid/ready        the design's ``i`` stream: one raw input value per beat
//   out_payload/valid/ready       the design's ``o`` stream: one result per beat
//   start                         pulsed for one cycle to begin an inference
//   done                          high for (at least) the cycle the inference completes
//   busy                          (0 if the design has none) the harness waits for it to drop
//                                 before ``start``
//   cycles                        (0 if the design has none) the design's cycle count of the
//                                 last inference, read after the ``done`` cycle
//
// Per inference, one loop over clock cycles: while fewer than ``n_in`` beats were taken, the
// harness offers the next one on ``in`` (a beat once offered stays offered until taken); ``start``
// is pulsed for one cycle once ``busy`` is low and, with ``inputs_first``, once all inputs were
// taken (as sim/run.py drives the accelerator and as hw/plan.py counts its cycles), otherwise in
// the first cycle (then no input is offered in that cycle). ``out_ready`` is high (unless stalled);
// handshakes are sampled before the rising edge. The inference ends on the first ``done`` after
// the start cycle. Errors are reported, never hung: see the ``THRESHER_*`` status codes below.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>

#include "verilated.h"
#include "Vdut.h"
#include "thresher_dut.h"

#if DUT_TRACE == 1
#include "verilated_vcd_c.h"
typedef VerilatedVcdC TraceFile;
#elif DUT_TRACE == 2
#include "verilated_fst_c.h"
typedef VerilatedFstC TraceFile;
#endif

// Status codes returned by thresher_run_batch (mirrored in sim/verilator.py).
enum {
    THRESHER_OK = 0,
    THRESHER_TIMEOUT = 1,        // an inference took more than ``timeout`` cycles
    THRESHER_EXTRA_OUTPUT = 2,   // more than n_out output beats, or one before ``start``
    THRESHER_EARLY_DONE = 3,     // ``done`` before n_out output beats (or before all n_in inputs)
    THRESHER_TRACE_ERROR = 4,    // tracing asked of a build without it, or the file did not open
};

// info[] slots filled by thresher_run_batch.
enum {
    INFO_TOTAL_CYCLES = 0,  // clock cycles simulated in this call (reset included)
    INFO_SAMPLE = 1,        // the inference that failed (or the batch size on success)
    INFO_SENT = 2,          // input beats accepted in that inference
    INFO_GOT = 3,           // output beats received in that inference
    INFO_LEN = 4,
};

namespace {

constexpr uint64_t mask_bits(int width) {
    return width >= 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1);
}

inline int64_t from_port(uint64_t value, int width, bool is_signed) {
    value &= mask_bits(width);
    if (is_signed && width < 64 && ((value >> (width - 1)) & 1))
        value |= ~mask_bits(width);
    return int64_t(value);
}

// xorshift64*: the stall pattern, reproducible from the seed.
struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL) {
        if (!state) state = 1;
    }
    uint32_t next8() {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        return uint32_t((state * 0x2545F4914F6CDD1DULL) >> 56);
    }
};

// thresher_run_batch reads the clock for its progress callback only after an inference that ends
// at least PROGRESS_CHECK_CYCLES cycles after the last reading, so a batch of short inferences
// pays nothing measurable for it.
constexpr uint64_t PROGRESS_CHECK_CYCLES = 1 << 16;

struct Sim {
    VerilatedContext ctx;
    std::unique_ptr<Vdut> top;
#if DUT_TRACE
    std::unique_ptr<TraceFile> tfp;
#endif
    uint64_t total_cycles = 0;

    Sim() {
        ctx.commandArgs(0, (const char **)nullptr);
#if DUT_TRACE
        ctx.traceEverOn(true);
#endif
        top.reset(new Vdut{&ctx, "dut"});
    }
    ~Sim() {
#if DUT_TRACE
        if (tfp) tfp->close();
#endif
        top->final();
    }

    void dump() {
#if DUT_TRACE
        if (tfp) tfp->dump(ctx.time());
#endif
        ctx.timeInc(1);
    }
    // Settle the combinational logic with the inputs just set (clock low); the caller then samples
    // the handshakes and calls rise().
    void settle() { top->clk = 0; top->eval(); dump(); }
    void rise() { top->clk = 1; top->eval(); dump(); ++total_cycles; }
    void cycle() { settle(); rise(); }
};

}  // namespace

extern "C" {

// Bumped whenever the signature or the meaning of thresher_run_batch changes.
int thresher_abi_version() { return 3; }

int thresher_in_width() { return DUT_IN_WIDTH; }
int thresher_out_width() { return DUT_OUT_WIDTH; }
int thresher_trace_kind() { return DUT_TRACE; }

// Run ``batch`` inferences.  ``in`` is (batch, n_in) row-major int64 (already range-checked by the
// caller), ``out`` (batch, n_out) and ``cycles`` (batch,) are written.  ``timeout`` bounds the cycles
// of one inference (from its first cycle to ``done``).  ``stall`` (0..255) is the chance in 256
// that the harness withholds a new input beat or ``out_ready`` in a cycle, from ``seed``: 0 means
// full speed.  ``trace_path`` (or NULL) dumps reset and the first inference only.  ``info`` gets
// INFO_LEN values (see above).  ``progress`` (or NULL) is called with the number of inferences
// done, at most every ``progress_seconds`` of wall time (and never after the last one).
typedef void (*thresher_progress_fn)(int64_t done);
int thresher_run_batch(const int64_t *in, int64_t batch, int64_t n_in, int64_t *out, int64_t n_out,
                       int64_t *cycles, int64_t timeout, int inputs_first, int stall,
                       uint64_t seed, const char *trace_path, int64_t *info,
                       thresher_progress_fn progress, double progress_seconds) {
    for (int k = 0; k < INFO_LEN; ++k) info[k] = 0;
#if !DUT_TRACE
    if (trace_path) return THRESHER_TRACE_ERROR;
#endif
    Sim sim;
    Vdut *top = sim.top.get();
#if DUT_TRACE
    if (trace_path) {
        sim.tfp.reset(new TraceFile);
        top->trace(sim.tfp.get(), 99);
        sim.tfp->open(trace_path);
        if (!sim.tfp->isOpen()) return THRESHER_TRACE_ERROR;
    }
#endif
    Rng rng(seed);
    const uint64_t in_mask = mask_bits(DUT_IN_WIDTH);
    int status = THRESHER_OK;
    int64_t sample = 0, sent = 0, got = 0;
    uint64_t next_check = PROGRESS_CHECK_CYCLES;
    auto last_report = std::chrono::steady_clock::now();

    top->start = 0;
    top->in_valid = 0;
    top->in_payload = 0;
    top->out_ready = 0;
    top->rst = 1;
    sim.cycle();
    sim.cycle();
    top->rst = 0;

    for (sample = 0; sample < batch; ++sample) {
#if DUT_TRACE
        if (sample == 1 && sim.tfp) { sim.tfp->close(); sim.tfp.reset(); }
#endif
        const int64_t *x = in + sample * n_in;
        int64_t *y = out + sample * n_out;
        int64_t elapsed = 0, run_cycles = 0;
        bool started = false;
        sent = got = 0;
        top->in_valid = 0;
        for (;;) {
            // Drive this cycle's inputs, then let the combinational logic settle.
            bool starting = false;
            if (!started && (!inputs_first || sent == n_in)) {
                top->start = 0;
                top->eval();  // no edge: just settle with start low, in case busy depends on it
#if DUT_HAS_BUSY
                starting = !top->busy;
#else
                starting = true;
#endif
            }
            top->start = starting;
            if (!top->in_valid && sent < n_in && !(starting && !inputs_first)) {
                const bool offer = !(stall && int(rng.next8()) < stall);
                top->in_valid = offer;
                if (offer) top->in_payload = uint64_t(x[sent]) & in_mask;
            }
            top->out_ready = !(stall && int(rng.next8()) < stall);
            sim.settle();
            // Sample the handshakes before the edge.
            const bool in_fire = top->in_valid && top->in_ready;
            const bool out_fire = top->out_valid && top->out_ready;
            const bool done = started && top->done;
            if (out_fire) {
                if (got >= n_out || !(started || starting)) {
                    status = THRESHER_EXTRA_OUTPUT;
                    goto finish;
                }
                y[got++] = from_port(top->out_payload, DUT_OUT_WIDTH, DUT_OUT_SIGNED);
            }
            sim.rise();
            ++elapsed;
            if (started || starting) ++run_cycles;
            started = started || starting;
            if (in_fire) {
                ++sent;
                top->in_valid = 0;
            }
            if (done) {
                if (got < n_out || sent < n_in) { status = THRESHER_EARLY_DONE; goto finish; }
                break;
            }
            if (elapsed >= timeout) { status = THRESHER_TIMEOUT; goto finish; }
        }
        top->start = 0;
        top->in_valid = 0;
#if DUT_HAS_CYCLES
        // ``cycles`` as it stands after the edge that ends the ``done`` cycle (the model has been
        // evaluated after that edge, so no extra cycle is spent).
        (void)run_cycles;
        cycles[sample] = int64_t(uint64_t(top->cycles));
#else
        cycles[sample] = run_cycles;  // from the ``start`` cycle to the ``done`` cycle, inclusive
#endif
        if (progress && sim.total_cycles >= next_check && sample + 1 < batch) {
            next_check = sim.total_cycles + PROGRESS_CHECK_CYCLES;
            const auto now = std::chrono::steady_clock::now();
            if (std::chrono::duration<double>(now - last_report).count() >= progress_seconds) {
                last_report = now;
                progress(sample + 1);
            }
        }
    }
finish:
    info[INFO_TOTAL_CYCLES] = int64_t(sim.total_cycles);
    info[INFO_SAMPLE] = sample;
    info[INFO_SENT] = sent;
    info[INFO_GOT] = got;
    return status;
}

}  // extern "C"
