//! Arbitrary bytes as a bundle: parse the safetensors header and the `unweight` metadata, check
//! every component, decode every compressed tensor. Errors are expected; panics, hangs and
//! running out of memory are bugs. Seeds: fuzz/seeds/bundle (small bundles of each encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = unweight::bundle::decode_bytes(data) {
        // Whatever decodes has exactly the bytes its dtype and shape call for.
        for (name, (dtype, shape, bytes)) in &decoded.tensors {
            assert_eq!(
                unweight::bundle::writer::byte_len(*dtype, shape),
                Some(bytes.len()),
                "{name}"
            );
        }
    }
});
