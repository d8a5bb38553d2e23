//! Gates for the rarely ready branches of a connection's `select!` loop (shutdown, a control
//! drop or redirect, the client's next bytes, the timer).
//!
//! A player's task wakes about 30 times a second for media, and `select!` polls every branch on
//! each wake-up. Polling the rare ones is not free: a cancellation token takes a mutex, a
//! redirect `watch` registers and unregisters a waiter, the read half checks its readiness
//! under a lock. Profiled at 1000 players, those polls cost about a tenth of the server's user
//! time. A gated branch is polled with a waker of its own, which records that *this* branch
//! was woken; until then, polling the gate is one atomic load. A branch that returned `Ready`
//! stays open for the next turn (a read may have more buffered, TLS especially), so nothing is
//! ever left unpolled that could make progress.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWakerVTable, Wake, Waker};

/// The gates of one task: which were woken, and the task to wake.
pub struct Gates {
    shared: Arc<Shared>,
    /// The task waker last handed to `shared`, by identity (what `Waker::will_wake` compares):
    /// re-registering the same one costs two loads. Only the owning task writes them.
    last_data: AtomicPtr<()>,
    last_vtable: AtomicPtr<RawWakerVTable>,
    next_bit: u32,
}

struct Shared {
    /// One bit per gate: woken (or never polled, or last `Ready`) since its last `Pending`.
    open: AtomicU32,
    task: Mutex<Option<Waker>>,
}

/// One gated branch; polled through [`Gates::poll`].
pub struct Gate {
    bit: u32,
    /// Handed to the branch's future: sets `bit`, then wakes the task.
    waker: Waker,
}

struct GateWaker {
    shared: Arc<Shared>,
    bit: u32,
}

impl Wake for GateWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.open.fetch_or(self.bit, Ordering::AcqRel);
        let task = self.shared.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = task.as_ref() {
            t.wake_by_ref();
        }
    }
}

impl Default for Gates {
    fn default() -> Self {
        Self::new()
    }
}

impl Gates {
    pub fn new() -> Self {
        let shared = Arc::new(Shared { open: AtomicU32::new(0), task: Mutex::new(None) });
        Self {
            shared,
            last_data: AtomicPtr::new(std::ptr::null_mut()),
            last_vtable: AtomicPtr::new(std::ptr::null_mut()),
            next_bit: 1,
        }
    }

    /// A new gate, open (its branch is polled on the next turn). At most 32 per task.
    pub fn gate(&mut self) -> Gate {
        let bit = self.next_bit;
        assert!(bit != 0, "at most 32 gates per task");
        self.next_bit = bit.wrapping_shl(1);
        self.shared.open.fetch_or(bit, Ordering::AcqRel);
        let waker = Waker::from(Arc::new(GateWaker { shared: Arc::clone(&self.shared), bit }));
        Gate { bit, waker }
    }

    /// Open `gate` so its branch is polled on the next turn (after changing what it waits for,
    /// e.g. moving a timer's deadline).
    pub fn open(&self, gate: &Gate) {
        self.shared.open.fetch_or(gate.bit, Ordering::AcqRel);
    }

    /// Poll a branch through its gate: `Pending` at the cost of one load unless the branch was
    /// woken (or is new, or was `Ready` last time); then `poll` runs with the gate's waker.
    pub fn poll<T>(
        &self,
        gate: &Gate,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.register(cx.waker());
        if self.shared.open.load(Ordering::Acquire) & gate.bit == 0 {
            return Poll::Pending;
        }
        // Closed before polling: a wake-up during the poll opens it again.
        self.shared.open.fetch_and(!gate.bit, Ordering::AcqRel);
        let out = poll(&mut Context::from_waker(&gate.waker));
        if out.is_ready() {
            self.open(gate);
        }
        out
    }

    /// Wait for `fut` through `gate` (a `select!` branch).
    pub fn wait<'a, F: Future>(
        &'a self,
        gate: &'a Gate,
        mut fut: Pin<&'a mut F>,
    ) -> impl Future<Output = F::Output> + 'a {
        std::future::poll_fn(move |cx| self.poll(gate, cx, |g| fut.as_mut().poll(g)))
    }

    fn register(&self, waker: &Waker) {
        let data = waker.data().cast_mut();
        let vtable = std::ptr::from_ref(waker.vtable()).cast_mut();
        if self.last_data.load(Ordering::Relaxed) == data && self.last_vtable.load(Ordering::Relaxed) == vtable {
            return;
        }
        *self.shared.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        self.last_data.store(data, Ordering::Relaxed);
        self.last_vtable.store(vtable, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A gated branch is polled once to register, then not again until its own waker fires;
    /// the task is woken when it does.
    #[test]
    fn gated_branch_is_polled_only_after_its_wake_up() {
        let task = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        let mut gates = Gates::new();
        let gate = gates.gate();
        let notify = tokio::sync::Notify::new();
        let mut notified = pin!(notify.notified());
        let mut polls = 0;
        for _ in 0..3 {
            let out = gates.poll(&gate, &mut cx, |g| {
                polls += 1;
                notified.as_mut().poll(g)
            });
            assert!(out.is_pending());
        }
        assert_eq!(polls, 1, "polled once to register, then gated");

        notify.notify_waiters();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task is woken through the gate");
        assert!(gates.poll(&gate, &mut cx, |g| notified.as_mut().poll(g)).is_ready());
    }

    /// A branch that was ready is polled again on the next turn (more may be buffered), and a
    /// gate opened by hand is polled too.
    #[test]
    fn ready_and_opened_gates_poll_again() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut gates = Gates::new();
        let gate = gates.gate();
        let other = gates.gate();
        let mut polls = 0;
        assert!(gates.poll(&gate, &mut cx, |_| Poll::Ready(())).is_ready());
        let _ = gates.poll(&gate, &mut cx, |_| {
            polls += 1;
            Poll::<()>::Pending
        });
        assert_eq!(polls, 1, "polled again after Ready");
        assert!(gates.poll(&gate, &mut cx, |_| Poll::Ready(())).is_pending());

        assert!(gates.poll(&other, &mut cx, |_| Poll::<()>::Pending).is_pending());
        gates.open(&other);
        assert!(gates.poll(&other, &mut cx, |_| Poll::Ready(())).is_ready());
    }
}
