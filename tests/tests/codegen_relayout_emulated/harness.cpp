// Runs one generated re-layout kernel (KERNEL, included as KERNEL_SOURCE) on the CPU with the Huffman
// tests' shim (one std::thread per CUDA thread, std::barrier for __syncthreads, blocks in turn).
// usage: harness IN OUT BLOCKS TRANSPOSED GRID
// IN (tiled blocks) is read into an allocation of exactly its size and OUT written from one of the same
// size, filled with 0xCD first, so AddressSanitizer catches any access past either and a vector the kernel
// never stores shows in the output.
#include "shim.h"

struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

#include KERNEL_SOURCE

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

static unsigned char* exact(size_t n) {
  void* p = nullptr;
  if (posix_memalign(&p, 16, n) != 0) std::exit(2);
  return static_cast<unsigned char*>(p);
}

int main(int argc, char** argv) {
  if (argc != 6) return 2;
  std::ifstream f(argv[1], std::ios::binary);
  if (!f) return 2;
  std::vector<unsigned char> v{std::istreambuf_iterator<char>(f), {}};
  const unsigned long long blocks = std::strtoull(argv[3], nullptr, 10);
  const unsigned transposed = std::strtoul(argv[4], nullptr, 10);
  const unsigned grid = std::strtoul(argv[5], nullptr, 10);
  unsigned char* in = exact(v.size());
  std::memcpy(in, v.data(), v.size());
  unsigned char* out = exact(v.size());
  std::memset(out, 0xCD, v.size());
  gridDim = {grid, 1, 1};
  blockDim = {THREADS, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    std::barrier<> block_barrier(THREADS);
    g_block_barrier = &block_barrier;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < THREADS; ++t)
      pool.emplace_back([&, t] {
        threadIdx = {t, 0, 0};
        blockIdx = {b, 0, 0};
        KERNEL(in, out, blocks, transposed);
      });
    for (auto& t : pool) t.join();
  }
  std::ofstream(argv[2], std::ios::binary).write((const char*)out, v.size());
  std::free(in);
  std::free(out);
  return 0;
}
