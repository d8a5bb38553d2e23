//! AMF3 with references inside command messages. The fuzzer's bytes, split at 0xFE, become
//! AMF3 values behind 0x11 switches of one AMF3 command message (type 17) after "connect", 1.
//! The budget must hold: what is charged never exceeds the limit, what decodes takes no more
//! than was charged, and the heap the decoder really uses (counted by the allocator below)
//! stays within a small multiple of the budget. Then the real command path (rtmp's
//! `Command::parse`, its own budget) must hold the same line.
#![no_main]
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;

/// Live heap bytes and their peak since the last reset (libFuzzer runs inputs on one thread).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            let now = LIVE.fetch_add(new_size - layout.size(), Relaxed) + (new_size - layout.size());
            PEAK.fetch_max(now, Relaxed);
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap bytes above what was live before, while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

/// Small, so the fuzzer reaches the limit often.
const BUDGET: usize = 64 << 10;

/// What decoding may really allocate for `budget`: vectors may hold spare capacity (up to the
/// charged size again) and a lossily decoded string briefly holds up to 3 bytes per input byte
/// before its extra size is charged.
fn allowed(budget: usize, input: usize) -> usize {
    4 * budget + 4 * input + 4096
}

fuzz_target!(|data: &[u8]| {
    let mut body = vec![0u8];
    body.extend(amf0::encode_all(&["connect".into(), 1.0.into()]));
    for piece in data.split(|b| *b == 0xFE) {
        body.push(amf0::marker::AVMPLUS_OBJECT);
        body.extend_from_slice(piece);
    }

    let mut budget = amf0::Budget::new(BUDGET);
    let (result, peak) = peak_during(|| amf0::decode_all_with_budget(&body[1..], &mut budget));
    assert!(budget.used() <= BUDGET, "charged {} of {BUDGET}", budget.used());
    match &result {
        Ok(values) => {
            let size: usize = values.iter().map(amf0::decoded_size).sum();
            assert!(size <= budget.used(), "decoded {size} bytes, charged {}", budget.used());
        }
        Err(amf0::Amf0Error::BudgetExceeded { limit }) => assert_eq!(*limit, BUDGET),
        Err(_) => {}
    }
    assert!(peak <= allowed(BUDGET, body.len()), "allocated {peak} bytes for a {BUDGET}-byte budget");
    drop(result);

    let (parsed, peak) = peak_during(|| rtmp::command::Command::parse(rtmp::message::type_id::COMMAND_AMF3, &body));
    let limit = rtmp::command::COMMAND_BUDGET;
    assert!(peak <= allowed(limit, body.len()), "allocated {peak} bytes for a {limit}-byte command budget");
    if let Err(rtmp::command::CommandError::Amf { source: amf0::Amf0Error::BudgetExceeded { limit: l }, .. }) = parsed {
        assert_eq!(l, limit);
    }
});
