//! Read-only memory maps of weight files (the one `unsafe` the weights loader
//! needs), and the huge-page advice for packed weights, kept here with the rest of
//! the crate's `unsafe` code.

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

/// Bytes of an x86-64 / aarch64 (4 KiB granule) transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `buf` with transparent huge
/// pages (Linux; nothing elsewhere, or where THP is off). Call it on a fresh,
/// untouched allocation, before writing it: pages faulted in afterwards are huge.
/// Decoding one token streams every weight once, and with 4 KiB pages each 4 KiB of
/// weights costs a TLB miss; 2 MiB pages make those 512 times rarer.
pub fn advise_huge_pages<T>(buf: &[T]) {
    #[cfg(target_os = "linux")]
    {
        let start = buf.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buf);
        let lo = start.next_multiple_of(HUGE_PAGE);
        let hi = end / HUGE_PAGE * HUGE_PAGE;
        if hi > lo {
            // SAFETY: `lo..hi` lies inside `buf`'s allocation and is page-aligned;
            // MADV_HUGEPAGE changes only how the kernel backs those pages, never
            // their contents or whether they may be accessed. A failure (THP
            // disabled, an old kernel) leaves the memory as it was: ignored.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
