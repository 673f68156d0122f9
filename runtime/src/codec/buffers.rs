//! Zeroed output buffers that ask Linux for transparent huge pages.
//!
//! A fresh 100 MB buffer costs ~25 000 page faults with 4 KiB pages, which on the development
//! machine took as long as decoding into it. `vec![0; n]` comes from calloc, which maps large
//! blocks fresh and does not touch them, so advising huge pages right after allocating still
//! applies to every page the decoder then writes (THP mode `madvise`, the common default).

/// Buffers below this size keep ordinary pages.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// `n` zero bytes.
pub fn zeroed_u8(n: usize) -> Vec<u8> {
    let v = vec![0u8; n];
    advise_huge(v.as_ptr() as usize, n);
    v
}

/// `n` zero u16 values.
pub fn zeroed_u16(n: usize) -> Vec<u16> {
    let v = vec![0u16; n];
    advise_huge(v.as_ptr() as usize, 2 * n);
    v
}

/// A copy of `bytes` in a fresh buffer that asks for huge pages (the bundle reader copies a
/// tensor's components out of the mapped file this way: with 4 KiB pages the copy's page
/// faults cost more than the copy).
pub fn copied_u8(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len());
    advise_huge(v.as_ptr() as usize, bytes.len());
    v.extend_from_slice(bytes);
    v
}

/// An empty vector with room for `n` u16 values, for writers that initialise every element
/// themselves (through `spare_capacity_mut`): no zeroing pass, and the page faults happen in
/// the (parallel) writers rather than in one thread up front.
pub fn uninit_u16(n: usize) -> Vec<u16> {
    let v = Vec::with_capacity(n);
    advise_huge(v.as_ptr() as usize, 2 * n);
    v
}

/// Largest scratch buffer a thread keeps between calls.
const SCRATCH_KEEP_BYTES: usize = 8 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `n` bytes of scratch with unspecified contents (the caller overwrites them all): the
/// thread's kept buffer when it is large enough, else a fresh one.
pub fn take_scratch(n: usize) -> Vec<u8> {
    let mut v = SCRATCH.take();
    if v.capacity() < n {
        SCRATCH.set(v);
        return zeroed_u8(n);
    }
    if v.len() >= n {
        v.truncate(n);
    } else {
        v.resize(n, 0);
    }
    v
}

/// Give a buffer from [`take_scratch`] back to this thread (kept if at most
/// `SCRATCH_KEEP_BYTES`, so a thread holds at most that much between calls).
pub fn return_scratch(v: Vec<u8>) {
    if v.capacity() > SCRATCH_KEEP_BYTES {
        return;
    }
    let kept = SCRATCH.take();
    SCRATCH.set(if v.capacity() >= kept.capacity() {
        v
    } else {
        kept
    });
}

fn advise_huge(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        if len < HUGE_MIN_BYTES {
            return;
        }
        let start = addr.next_multiple_of(PAGE);
        let end = (addr + len) / PAGE * PAGE;
        if end > start {
            // SAFETY: the range lies inside an allocation this function's caller owns; the
            // advice changes only how the kernel backs its pages, never their contents, and a
            // failure (e.g. THP disabled) is harmless, so the result is ignored.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len, HUGE_MIN_BYTES);
}
