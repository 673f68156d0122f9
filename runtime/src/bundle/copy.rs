//! Copying a byte range from one file to another inside the kernel (`copy_file_range`), so
//! pass-through tensors never travel through user space.

use std::fs::File;
use std::io;

/// Copies `len` bytes of `src` at `src_offset` to `dst` at `dst_offset`. Returns `Ok(false)`
/// when the OS cannot copy between these files (no `copy_file_range`, different file systems
/// on old kernels, special files): the caller then writes the bytes itself, over whatever part
/// was copied. Neither file's position changes.
pub fn copy_range(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: usize,
) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (mut off_in, mut off_out) = (src_offset as libc::loff_t, dst_offset as libc::loff_t);
        let mut left = len;
        while left > 0 {
            // SAFETY: both descriptors are open for the duration of the call (borrowed Files),
            // the offsets are valid pointers to locals the kernel updates, and no memory of
            // ours is read or written.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    left,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(
                        libc::ENOSYS
                        | libc::EXDEV
                        | libc::EINVAL
                        | libc::EOPNOTSUPP
                        | libc::EBADF
                        | libc::EPERM,
                    ) => Ok(false),
                    _ => Err(e),
                };
            }
            if n == 0 {
                // The source ended early (it changed under us): let the caller write from its
                // own view of the bytes.
                return Ok(false);
            }
            left -= n as usize;
        }
        Ok(true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (src, src_offset, dst, dst_offset, len);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};

    #[test]
    fn copies_a_range_between_files() {
        let mut src = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        src.write_all(&data).unwrap();
        let mut dst = tempfile::tempfile().unwrap();
        dst.set_len(60_000).unwrap();
        let copied = super::copy_range(&src, 1_000, &dst, 5_000, 50_000).unwrap();
        // Two files of one file system: Linux (5.3+) copies between them.
        assert_eq!(copied, cfg!(target_os = "linux"));
        let mut out = Vec::new();
        dst.rewind().unwrap();
        dst.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 60_000);
        if copied {
            assert_eq!(&out[5_000..55_000], &data[1_000..51_000]);
            assert!(out[..5_000].iter().chain(&out[55_000..]).all(|&b| b == 0));
        }
    }
}
