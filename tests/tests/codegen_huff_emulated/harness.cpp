// Runs one generated Huffman kernel (KERNEL, included as KERNEL_SOURCE) on the CPU.
// usage: harness DIR ROWS COLS PADDED_COLS CHUNK_SYMBOLS N_CHUNKS THREADS OUT_BYTES LAYOUT GRID STREAM_BITS
//                STREAM_BYTES ESC_GROUPS N_SUBS
// Reads DIR/{BITS_FILE,offsets,tables or tables_m4,palette,sm,bitmap,prefix,esc_exp} (BITS_FILE: "/bits" or "/bits16",
// the stream padded to what the kernel's refill reads; tables_m4 for refill sub256m4, the host-built decode tables), each into its own allocation of exactly the
// file's size (so AddressSanitizer catches a read one byte past any of them), runs GRID blocks of THREADS
// threads, writes DIR/out (an allocation of exactly OUT_BYTES bytes) and prints the error word: "err R C".
// Sub-chunk offsets: a sub256 kernel reads DIR/subs (its own exact allocation); a chunk kernel given N_SUBS > 0
// records them into an exact allocation of N_SUBS u32, written to DIR/subs_out; N_SUBS = 0: a null pointer.
#include "shim.h"
#include KERNEL_SOURCE

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// 16-byte aligned (the kernels' vector loads need it), exactly `n` bytes.
static unsigned char* exact(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 16, n) != 0) std::exit(2);
  return static_cast<unsigned char*>(p);
}

static unsigned char* load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) std::exit(2);
  std::vector<unsigned char> v{std::istreambuf_iterator<char>(f), {}};
  unsigned char* p = exact(v.size());
  if (!v.empty()) std::memcpy(p, v.data(), v.size());
  return p;
}

int main(int argc, char** argv) {
  if (argc != 15) return 2;
  const std::string dir = argv[1];
  auto num = [&](int i) { return std::strtoull(argv[i], nullptr, 10); };
  const unsigned long long rows = num(2), cols = num(3), padded = num(4);
  const unsigned chunk_symbols = num(5), n_chunks = num(6), threads = num(7);
  const size_t out_bytes = num(8);
  const unsigned layout = num(9), grid = num(10);
  const unsigned long long stream_bits = num(11), stream_bytes = num(12);
  const unsigned esc_groups = num(13);
  const size_t n_subs = num(14);
  unsigned char *bits = load(dir + BITS_FILE), *offsets = load(dir + "/offsets"), *tables = load(dir + (REFILL_M4 ? "/tables_m4" : "/tables"));
  unsigned char *palette = load(dir + "/palette"), *sm = load(dir + "/sm"), *bitmap = load(dir + "/bitmap");
  unsigned char *prefix = load(dir + "/prefix"), *esc_exp = load(dir + "/esc_exp");
  unsigned char* subs = nullptr;
  if (REFILL_SUB) {
    subs = load(dir + "/subs");
  } else if (n_subs > 0) {
    subs = exact(4 * n_subs);
    std::memset(subs, 0, 4 * n_subs);
  }
  unsigned char* out = exact(out_bytes);
  std::memset(out, 0xCD, out_bytes);
  auto* err = reinterpret_cast<unsigned*>(exact(2 * sizeof(unsigned)));
  err[0] = err[1] = 0;
  gridDim = {grid, 1, 1};
  blockDim = {threads, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    std::barrier<> block_barrier(threads);
    g_block_barrier = &block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    for (unsigned w = 0; w < threads / 32; ++w) {
      warps.emplace_back(new std::barrier<>(32));
      g_warp_barrier[w] = warps.back().get();
    }
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        threadIdx = {t, 0, 0};
        blockIdx = {b, 0, 0};
        KERNEL(bits, (const u32*)offsets, (const u32*)tables, palette, sm, (const u64*)bitmap, (const u32*)prefix, esc_exp,
               out, rows, cols, padded, chunk_symbols, n_chunks, layout, stream_bits, stream_bytes, esc_groups, err,
               (u32*)subs);
      });
    for (auto& t : pool) t.join();
  }
  std::ofstream(dir + "/out", std::ios::binary).write((const char*)out, out_bytes);
  if (!REFILL_SUB && n_subs > 0) std::ofstream(dir + "/subs_out", std::ios::binary).write((const char*)subs, 4 * n_subs);
  std::printf("err %u %u\n", err[0], err[1]);
  for (void* p : {(void*)bits, (void*)offsets, (void*)tables, (void*)palette, (void*)sm, (void*)bitmap, (void*)prefix,
                  (void*)esc_exp, (void*)out, (void*)err, (void*)subs})
    std::free(p);
  return 0;
}
