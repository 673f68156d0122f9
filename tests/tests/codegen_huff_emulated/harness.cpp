// Runs one generated Huffman kernel (KERNEL, included as KERNEL_SOURCE) on the CPU.
// usage: harness DIR ROWS COLS PADDED_COLS CHUNK_SYMBOLS N_CHUNKS THREADS OUT_BYTES LAYOUT
// Reads DIR/{bits,offsets,lut,palette,sm,bitmap,prefix,esc_exp}, writes DIR/out (OUT_BYTES bytes) and
// exits 3 if the kernel wrote past OUT_BYTES.
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

// 64-byte aligned copy with 64 spare bytes (the kernels assume 16-byte aligned device buffers).
static unsigned char* load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<unsigned char> v{std::istreambuf_iterator<char>(f), {}};
  const size_t n = (v.size() + 64 + 63) / 64 * 64;
  auto* p = static_cast<unsigned char*>(std::aligned_alloc(64, n));
  std::memset(p, 0, n);
  if (!v.empty()) std::memcpy(p, v.data(), v.size());
  return p;
}

int main(int argc, char** argv) {
  if (argc != 10) return 2;
  const std::string dir = argv[1];
  const unsigned long long rows = std::strtoull(argv[2], nullptr, 10), cols = std::strtoull(argv[3], nullptr, 10);
  const unsigned long long padded = std::strtoull(argv[4], nullptr, 10);
  const unsigned chunk_symbols = std::strtoul(argv[5], nullptr, 10), n_chunks = std::strtoul(argv[6], nullptr, 10);
  const unsigned threads = std::strtoul(argv[7], nullptr, 10);
  const size_t out_bytes = std::strtoull(argv[8], nullptr, 10);
  const unsigned layout = std::strtoul(argv[9], nullptr, 10);
  unsigned char *bits = load(dir + "/bits"), *offsets = load(dir + "/offsets"), *lut = load(dir + "/lut");
  unsigned char *palette = load(dir + "/palette"), *sm = load(dir + "/sm"), *bitmap = load(dir + "/bitmap");
  unsigned char *prefix = load(dir + "/prefix"), *esc_exp = load(dir + "/esc_exp");
  const size_t guard = 64;
  auto* out = static_cast<unsigned char*>(std::aligned_alloc(64, (out_bytes + guard + 63) / 64 * 64));
  std::memset(out, 0xCD, out_bytes + guard);
  const unsigned blocks = (n_chunks + threads - 1) / threads;
  gridDim = {blocks, 1, 1};
  blockDim = {threads, 1, 1};
  for (unsigned b = 0; b < blocks; ++b) {
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
        KERNEL(bits, (const u32*)offsets, (const u16*)lut, palette, sm, (const u64*)bitmap, (const u32*)prefix, esc_exp,
               out, rows, cols, padded, chunk_symbols, n_chunks, layout);
      });
    for (auto& t : pool) t.join();
  }
  std::ofstream(dir + "/out", std::ios::binary).write((const char*)out, out_bytes);
  for (size_t i = out_bytes; i < out_bytes + guard; ++i)
    if (out[i] != 0xCD) return 3;
  return 0;
}
