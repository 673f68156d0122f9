// Host shim for running the Huffman preprocess kernels (plain CUDA C++, no inline PTX) on the CPU:
// one std::thread per CUDA thread, std::barrier for __syncthreads / __syncwarp, blocks one after another
// (so `__shared__` can be a function-local static).
#pragma once
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>

#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

struct dim3 { unsigned x, y, z; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* g_block_barrier;
inline std::barrier<>* g_warp_barrier[32];

// A trapped launch: the harness exits with this status, which the test tells apart from a crash.
constexpr int TRAP_EXIT = 5;
[[noreturn]] inline void __trap() { std::_Exit(TRAP_EXIT); }
inline void __syncthreads() { g_block_barrier->arrive_and_wait(); }
inline void __syncwarp() { g_warp_barrier[threadIdx.x / 32]->arrive_and_wait(); }
// Bytes of {y, x} picked by the low 3 bits of each selector nibble (CUDA's __byte_perm).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = ((unsigned long long)y << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
}
// High word of {hi, lo} << (s mod 32) (CUDA's __funnelshift_l).
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned s) {
  s &= 31;
  return s ? (hi << s) | (lo >> (32 - s)) : hi;
}
// Low word of {hi, lo} >> min(s, 32) (CUDA's __funnelshift_rc).
inline unsigned __funnelshift_rc(unsigned lo, unsigned hi, unsigned s) {
  const unsigned long long v = ((unsigned long long)hi << 32) | lo;
  return s >= 32 ? hi : (unsigned)(v >> s);
}
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __clz(unsigned x) { return x == 0 ? 32 : __builtin_clz(x); }
inline unsigned atomicOr(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_or(v); }
inline unsigned atomicMax(unsigned* p, unsigned v) {
  std::atomic_ref<unsigned> a(*p);
  unsigned old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
