//! Allocator settings and memory hints for big images: where big allocations come from, pages
//! written before they are probed ([`written_zeros`]), and loads asked for ahead of their
//! turn ([`prefetch`]).
//!
//! glibc's malloc serves big allocations as mappings of their own, but each time one is freed
//! it raises that size limit (up to 32 MiB). Loading a big image grows and frees vectors of
//! every size, so after the first few, big allocations come from the heap instead, and the
//! holes they leave there are not given back to the system. On a million-file image that was
//! about 30 MB of the peak. A fixed limit keeps big allocations in mappings of their own, which
//! go back to the system as soon as they are freed.

/// Allocations from this size on get mappings of their own. It lies above the 256 KiB
/// buffers that the sources allocate and free for every read: as fresh mappings, each would
/// be zeroed by a page fault every 4 KiB. With glibc's initial 128 KiB, reading 1.2 GB of
/// uncompressed layers from a docker archive took 1.4 s of system time, not 0.7 s. The
/// decoder's 512 KiB chunks do get mappings of their own, but they are made once per layer
/// and passed round, so they fault once and go back to the system when the layer ends.
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

/// Bytes of a memory page, the unit [`written_zeros`] touches.
const PAGE: usize = 4096;

/// `len` zeros whose pages are written now, one store a page.
///
/// `vec![0; len]` takes fresh pages from the kernel untouched. A table that reads a slot
/// before writing it (probing for an empty one) first maps such a page to the kernel's shared
/// zero page and then faults again to replace it. Replacing a mapping flushes it from the TLB
/// of every CPU that runs one of the process's threads, an interprocessor interrupt per page,
/// and those are slow in a virtual machine: growing the child table to 2M slots took 0.13 s
/// of CPU on the million-file image's merge thread that way. A page written first is mapped
/// once, with nothing to flush.
pub fn written_zeros<T: Copy + Default>(len: usize) -> Vec<T> {
    let mut values = vec![T::default(); len];
    let step = (PAGE / std::mem::size_of::<T>().max(1)).max(1);
    for i in (0..len).step_by(step) {
        // An opaque value, so that the store is not dropped as writing what is there.
        values[i] = std::hint::black_box(T::default());
    }
    values
}

/// Start loading the cache line that holds `value`, for a read soon after.
///
/// The model's tables are far bigger than the caches, and a merge that follows a chain of
/// lookups waits on one load after another. Asked for a few items ahead, the loads of later
/// items overlap the work on the current one. A hint: nothing is read back.
#[inline]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let address: *const T = value;
        // SAFETY: SSE is part of every x86_64 target, and a prefetch never faults; the
        // address is a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_zeros_are_zeros() {
        let values: Vec<u64> = written_zeros(10_000);
        assert_eq!(values.len(), 10_000);
        assert!(values.iter().all(|&v| v == 0));
        assert!(written_zeros::<u8>(0).is_empty());
    }
}
