// Runs one generated activation kernel on the CPU: every (block, thread) of the grid in turn (the
// kernels have no barriers or shared memory), with CUDA's round-to-nearest intrinsics mapped to
// IEEE host arithmetic (built with -ffp-contract=off, so nothing is fused but fmaf).
// Usage: harness <a> <b|-> <out> <n> <blocks> <inplace 0|1>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(...)

struct dim3 { unsigned x, y, z; };
static dim3 threadIdx, blockIdx, gridDim;
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }

#include KERNEL_SOURCE

static std::vector<unsigned short> read_u16(const char* path) {
  std::vector<unsigned short> v;
  FILE* f = std::fopen(path, "rb");
  if (!f) { std::perror(path); std::exit(2); }
  unsigned short x;
  while (std::fread(&x, 2, 1, f) == 1) v.push_back(x);
  std::fclose(f);
  return v;
}

int main(int argc, char** argv) {
  if (argc != 7) { std::fprintf(stderr, "usage: harness a b out n blocks inplace\n"); return 2; }
  std::vector<unsigned short> a = read_u16(argv[1]);
  std::vector<unsigned short> b;
  if (std::strcmp(argv[2], "-") != 0) b = read_u16(argv[2]);
  const unsigned long long n = std::strtoull(argv[4], nullptr, 10);
  const unsigned blocks = (unsigned)std::strtoul(argv[5], nullptr, 10);
  const bool inplace = argv[6][0] == '1';
  // 16-byte aligned buffers of exactly n values, so any overrun shows up under ASan.
  auto alloc = [](unsigned long long n) {
    void* p = nullptr;
    if (posix_memalign(&p, 16, n * 2) != 0) std::exit(3);
    return static_cast<unsigned short*>(p);
  };
  auto aligned = [&](const std::vector<unsigned short>& src, unsigned long long n) {
    unsigned short* p = alloc(n);
    std::memcpy(p, src.data(), n * 2);
    return p;
  };
  unsigned short* pa = aligned(a, n);
  unsigned short* pb = b.empty() ? nullptr : aligned(b, n);
  unsigned short* out = inplace ? pa : alloc(n);
  gridDim = {blocks, 1, 1};
  for (unsigned bx = 0; bx < blocks; ++bx)
    for (unsigned tx = 0; tx < THREADS; ++tx) {
      blockIdx = {bx, 0, 0};
      threadIdx = {tx, 0, 0};
      KERNEL(pa, pb, out, n);
    }
  FILE* f = std::fopen(argv[3], "wb");
  std::fwrite(out, 2, n, f);
  std::fclose(f);
  if (out != pa) std::free(out);
  std::free(pa);
  std::free(pb);
  return 0;
}
