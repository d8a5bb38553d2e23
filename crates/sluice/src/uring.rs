//! Batched sends for fan-out shards: one `io_uring_enter` hands the kernel a group of members'
//! non-blocking `sendmsg`s, instead of one system call each.
//!
//! A shard writes the same round to hundreds of sockets. Profiled at 1000 players, the per-call
//! part of each `sendmsg` (system call entry, looking the descriptor up and referencing its file,
//! copying the message header in) was about a tenth of the server's time. With registered files
//! the descriptor lookup and the file's reference count are paid once per member, not once per
//! send.
//!
//! Each send carries `MSG_DONTWAIT`, so the kernel runs it inline during the submission and it
//! never waits for the socket: a full socket completes with `EAGAIN` exactly as a plain
//! `sendmsg` returns it, and the shard gives the player back. Every submitted send is reaped
//! before [`SendRing::send`] returns, so the buffers it points at only have to outlive the call.
//!
//! Detected at run time: where a ring cannot be made (a kernel before 5.6, io_uring disabled by
//! `kernel.io_uring_disabled` or a seccomp filter), shards use plain `sendmsg`, and the server
//! says so once.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use io_uring::{opcode, types, IoUring};

// The most buffers per send, as a plain gathered write takes (the rest of a member's round goes
// by plain `sendmsg`).
use crate::transport::MAX_IOVECS;

/// Most sends submitted at once: the members whose state is locked while their sends run, so
/// a player leaving its shard waits at most for this many sends.
pub(crate) const GROUP: usize = 64;

/// Whether "io_uring unavailable" was logged (once per process).
static UNAVAILABLE_LOGGED: AtomicBool = AtomicBool::new(false);

/// One shard's ring, with room for [`GROUP`] sends' headers.
pub(crate) struct SendRing {
    ring: IoUring,
    /// Registered descriptors, by slot; `None` for a free slot.
    files: Vec<Option<RawFd>>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::msghdr>,
}

// SAFETY: the raw pointers in `iovecs` and `msgs` are scratch, only meaningful during `send`
// (which takes `&mut self`); between calls they point at nothing that is read.
unsafe impl Send for SendRing {}

/// How one job went: bytes sent, or the error.
pub(crate) type Sent = io::Result<usize>;

impl SendRing {
    /// A ring for a shard of at most `members` players; `None` (logged once) where io_uring is
    /// unavailable or `SLUICE_URING=off`.
    pub(crate) fn new(members: usize) -> Option<Self> {
        if std::env::var_os("SLUICE_URING").is_some_and(|v| v == "off") {
            return None;
        }
        match Self::try_new(members) {
            Ok(ring) => Some(ring),
            Err(e) => {
                if !UNAVAILABLE_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "io_uring unavailable: fan-out shards send with one sendmsg per player");
                }
                None
            }
        }
    }

    fn try_new(members: usize) -> io::Result<Self> {
        let ring = IoUring::new(GROUP as u32)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::SendMsg::CODE) {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "no IORING_OP_SENDMSG"));
        }
        ring.submitter().register_files_sparse(members as u32)?;
        Ok(Self {
            ring,
            files: vec![None; members],
            iovecs: Vec::with_capacity(GROUP * MAX_IOVECS),
            msgs: Vec::with_capacity(GROUP),
        })
    }

    /// Register `fd` for sends; its slot, or `None` when the table is full or the kernel refused
    /// (the member is then sent to by descriptor).
    pub(crate) fn register(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.files.iter().position(Option::is_none)?;
        self.ring.submitter().register_files_update(slot as u32, &[fd]).ok()?;
        self.files[slot] = Some(fd);
        Some(slot as u32)
    }

    /// Drop the ring's reference to the socket in `slot` (a registered file keeps its socket
    /// open until then, whoever closes the descriptor).
    pub(crate) fn unregister(&mut self, slot: u32) {
        let Some(entry) = self.files.get_mut(slot as usize) else { return };
        if entry.take().is_some() {
            // -1 empties the slot; failing, the reference stays until the ring is dropped.
            let _ = self.ring.submitter().register_files_update(slot, &[-1]);
        }
    }

    /// One non-blocking `sendmsg` per job (its target and buffers), submitted together; each
    /// job's result in `results`, in order. At most [`GROUP`] jobs.
    pub(crate) fn send(&mut self, jobs: &[(Target, &[Bytes])], results: &mut Vec<Sent>) {
        assert!(jobs.len() <= GROUP, "a send group is at most GROUP jobs");
        results.clear();
        if jobs.is_empty() {
            return;
        }
        self.build_headers(jobs);
        if let Err(e) = self.submit(jobs) {
            // Nothing known about which sends ran: each player's own task takes over with an
            // error (it closes), never with a byte twice or missing.
            results.extend(jobs.iter().map(|_| Err(io::Error::new(e.kind(), e.to_string()))));
            return;
        }
        results.extend((0..jobs.len()).map(|_| Ok(0)));
        for cqe in self.ring.completion() {
            let (job, res) = (cqe.user_data() as usize, cqe.result());
            if let Some(slot) = results.get_mut(job) {
                *slot = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as usize) };
            }
        }
    }

    /// The iovecs and message headers of every job, in storage reserved for [`GROUP`] jobs so
    /// that no pointer into it moves.
    fn build_headers(&mut self, jobs: &[(Target, &[Bytes])]) {
        self.iovecs.clear();
        self.msgs.clear();
        for (_, bufs) in jobs {
            for b in bufs.iter().take(MAX_IOVECS) {
                self.iovecs.push(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
            }
        }
        let mut at = 0;
        for (_, bufs) in jobs {
            let n = bufs.len().min(MAX_IOVECS);
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = self.iovecs[at..].as_mut_ptr();
            msg.msg_iovlen = n as _;
            self.msgs.push(msg);
            at += n;
        }
    }

    /// Queue every job's send and wait until all have completed.
    fn submit(&mut self, jobs: &[(Target, &[Bytes])]) -> io::Result<()> {
        let flags = (libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32;
        {
            let mut sq = self.ring.submission();
            for (i, ((target, _), msg)) in jobs.iter().zip(&self.msgs).enumerate() {
                let entry = match *target {
                    Target::Slot(slot) => opcode::SendMsg::new(types::Fixed(slot), msg),
                    Target::Fd(fd) => opcode::SendMsg::new(types::Fd(fd), msg),
                };
                let entry = entry.flags(flags).build().user_data(i as u64);
                // SAFETY: the message header, its iovecs and the buffers they point at outlive
                // the send: `send` reaps every completion before it returns.
                unsafe { sq.push(&entry) }.map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        let want = jobs.len();
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) if self.ring.completion().len() >= want => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Where one send goes: a registered slot, or a plain descriptor.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Slot(u32),
    Fd(RawFd),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn ring() -> Option<SendRing> {
        let ring = SendRing::try_new(8);
        if let Err(e) = &ring {
            eprintln!("SKIPPED: io_uring unavailable here ({e})");
        }
        ring.ok()
    }

    /// Sends to a registered slot and to a plain descriptor in one submission both arrive, whole
    /// and in order; a full socket completes with EAGAIN, not a wait.
    #[test]
    fn a_group_of_sends_arrives_and_a_full_socket_says_would_block() {
        let Some(mut ring) = ring() else { return };
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let slot = ring.register(a.as_raw_fd()).expect("a free slot");
        let a_bufs = [Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
        let b_bufs = [Bytes::from_static(b"second")];
        let mut results = Vec::new();
        ring.send(&[(Target::Slot(slot), &a_bufs), (Target::Fd(b.as_raw_fd()), &b_bufs)], &mut results);
        assert_eq!(results.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(), [11, 6]);
        let mut got = [0; 11];
        a_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
        let mut got = [0; 6];
        b_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"second");

        let big = [Bytes::from(vec![7u8; 1 << 20])];
        let mut full = false;
        for _ in 0..64 {
            ring.send(&[(Target::Slot(slot), &big)], &mut results);
            match &results[0] {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    full = true;
                    break;
                }
                r => assert!(r.is_ok(), "{r:?}"),
            }
        }
        assert!(full, "a socket nobody reads fills and says so");
        ring.unregister(slot);
        assert_eq!(ring.register(b.as_raw_fd()), Some(slot), "an unregistered slot is free again");
    }
}
