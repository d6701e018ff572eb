//! Read-only memory maps of weight files: the one `unsafe` the weights loader
//! needs, kept here with the rest of the crate's `unsafe` code.

use std::fs::File;

use memmap2::Mmap;

/// Maps `file` read-only.
pub fn map_readonly(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and owned by the caller, and rinfer never
    // writes through it. Like every mmap user, this relies on the file not being
    // truncated or modified by another process while it is mapped (the
    // safetensors header is validated against the mapped length after mapping).
    unsafe { Mmap::map(file) }
}
