//! Allocator settings for big images.
//!
//! glibc's malloc serves big allocations as mappings of their own, but each time one is freed
//! it raises that size limit (up to 32 MiB). Loading a big image grows and frees vectors of
//! every size, so after the first few, big allocations come from the heap instead, and the
//! holes they leave there are not given back to the system. On a million-file image that was
//! about 30 MB of the peak. A fixed limit keeps big allocations in mappings of their own, which
//! go back to the system as soon as they are freed.

/// Allocations from this size on get mappings of their own. It lies above the 256 KiB
/// buffers that the streaming stages allocate and free for every chunk: as fresh mappings,
/// each would be zeroed by a page fault every 4 KiB. With glibc's initial 128 KiB, reading
/// 1.2 GB of uncompressed layers from a docker archive took 1.4 s of system time, not 0.7 s.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING_FROM: i32 = 512 * 1024;

/// Fix the size from which allocations get mappings of their own (glibc only; elsewhere
/// nothing to do). Call it before the first threads start.
pub fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; glibc takes its own lock for it.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
    }
}
