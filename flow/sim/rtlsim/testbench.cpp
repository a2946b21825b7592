// qflow's AXI-stream testbench for a stitched design (flow/sim/rtlsim/harness.py fills the @...@
// placeholders with the design's ports; everything else is fixed).
//
// Run folder: in<k>.hex (one word per line, hex), monitors.txt (pairs of probe numbers whose
// transfer-count difference is a FIFO's occupancy). Writes out<k>.txt ("cycle hexword" per
// word), in<k>.acc (cycle each input word was accepted) and stats.txt.
//
// Options: --expect N (per output, words to collect), --idle N (deadlock bound: cycles without
// any transfer), --maxcycles N (hard bound), --pin/--pout P (percent of cycles an input offers a
// word / an output is ready; seeded xorshift), --seed S, --pace T and --wpf W (per input: word i
// of input k is offered no earlier than cycle (i / W[k]) * T, i.e. one frame every T cycles).
#include "Vqf_top.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

typedef std::vector<uint32_t> Word;
static uint64_t rng = 88172645463325252ull;
static unsigned rnd100() { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng % 100; }

static std::vector<Word> load(const std::string &path) {
  std::vector<Word> out; std::ifstream f(path); std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    Word w; int n = line.size();
    for (int end = n; end > 0; end -= 8) {
      int beg = end - 8 < 0 ? 0 : end - 8;
      w.push_back((uint32_t)strtoul(line.substr(beg, end - beg).c_str(), nullptr, 16));
    }
    out.push_back(w);
  }
  return out;
}

static void hexw(FILE *f, const Word &w, int width) {
  int digits = (width + 3) / 4; std::string s;
  for (int d = digits - 1; d >= 0; --d) s += "0123456789abcdef"[(w[d / 8] >> (4 * (d % 8))) & 15];
  fputs(s.c_str(), f);
}

int main(int argc, char **argv) {
  long long idle = 10000, maxcycles = 100000000, pace = 0; unsigned pin = 100, pout = 100;
  std::vector<long long> expect, wpf;
  for (int a = 1; a + 1 < argc; a += 2) {
    std::string k = argv[a]; const char *v = argv[a + 1];
    if (k == "--idle") idle = atoll(v); else if (k == "--maxcycles") maxcycles = atoll(v);
    else if (k == "--pin") pin = atoi(v); else if (k == "--pout") pout = atoi(v);
    else if (k == "--seed") rng = strtoull(v, nullptr, 10) * 2654435761ull + 1;
    else if (k == "--expect") expect.push_back(atoll(v));
    else if (k == "--pace") pace = atoll(v); else if (k == "--wpf") wpf.push_back(atoll(v));
  }
  VerilatedContext *ctx = new VerilatedContext; ctx->commandArgs(argc, argv);
  Vqf_top *top = new Vqf_top{ctx};
  const int NI = @NI@, NO = @NO@, NE = @NE@, NP = NI + NO + NE;  // probes: inputs, outputs, edges
  if ((int)expect.size() != NO || (pace > 0 && (int)wpf.size() != NI)) { fprintf(stderr, "bad arguments\n"); return 2; }
  std::vector<std::vector<Word>> in(NI);
  for (int k = 0; k < NI; ++k) in[k] = load("in" + std::to_string(k) + ".hex");
  std::vector<size_t> idx(NI, 0); std::vector<int> vld(NI, 0), rdy(NO, 0), f(NP, 0);
  std::vector<long long> got(NO, 0), fires(NP, 0), first(NP, -1), last(NP, -1);
  std::vector<std::pair<int, int>> mon; std::vector<long long> peak;
  { std::ifstream mf("monitors.txt"); int a, b; while (mf >> a >> b) { mon.push_back({a, b}); peak.push_back(0); } }
  std::vector<FILE *> fo(NO), fa(NI);
  for (int k = 0; k < NO; ++k) fo[k] = fopen(("out" + std::to_string(k) + ".txt").c_str(), "w");
  for (int k = 0; k < NI; ++k) fa[k] = fopen(("in" + std::to_string(k) + ".acc").c_str(), "w");
  top->ap_clk = 0; top->ap_rst_n = 0;
@CLEAR@
  for (int c = 0; c < 18; ++c) {  // reset for 16 cycles, then 2 idle ones (as FINN's own testbench)
    top->ap_rst_n = c < 16 ? 0 : 1;
    top->ap_clk = 0; top->eval(); top->ap_clk = 1; top->eval();
  }
  long long cyc = 0, quiet = 0; const char *status = "ok";
  auto done = [&]() { for (int k = 0; k < NO; ++k) if (got[k] < expect[k]) return false; return true; };
  auto due = [&](int k) { return pace <= 0 || cyc >= (long long)(idx[k] / wpf[k]) * pace; };
  auto drive = [&]() {  // inputs change after the rising edge and hold until accepted
    for (int k = 0; k < NI; ++k) if (!vld[k] && idx[k] < in[k].size() && due(k) && rnd100() < pin) vld[k] = 1;
    for (int k = 0; k < NO; ++k) rdy[k] = got[k] < expect[k] && rnd100() < pout;
@DRIVE@
  };
  drive();
  while (!done()) {
    if (cyc >= maxcycles) { status = "maxcycles"; break; }
    if (quiet >= idle) { status = "deadlock"; break; }
    top->ap_clk = 0; top->eval();
@SAMPLE@
    bool any = false;
    for (int p = 0; p < NP; ++p) if (f[p]) { any = true; fires[p]++; if (first[p] < 0) first[p] = cyc; last[p] = cyc; }
    for (size_t m = 0; m < mon.size(); ++m) {
      long long o = fires[mon[m].first] - fires[mon[m].second]; if (o > peak[m]) peak[m] = o;
    }
    quiet = any ? 0 : quiet + 1;
    top->ap_clk = 1; top->eval();
    for (int k = 0; k < NI; ++k) if (f[k]) { fprintf(fa[k], "%lld\n", cyc); idx[k]++; vld[k] = 0; }
    cyc++;
    drive();
  }
  for (int k = 0; k < NO; ++k) fclose(fo[k]);
  for (int k = 0; k < NI; ++k) fclose(fa[k]);
  FILE *fs = fopen("stats.txt", "w");
  fprintf(fs, "status %s\ncycles %lld\n", status, cyc);
  for (int p = 0; p < NP; ++p) fprintf(fs, "probe %d %lld %lld %lld\n", p, fires[p], first[p], last[p]);
  for (size_t m = 0; m < mon.size(); ++m) fprintf(fs, "peak %zu %lld\n", m, peak[m]);
  fclose(fs);
  top->final(); delete top; delete ctx;
  return 0;
}
