//! A growable buffer that writes ISOBMFF boxes: a box is opened with a size placeholder, its
//! body written, and the size patched when it is closed.
//! Defined by: ISO/IEC 14496-12, 4.2 (`Box`, `FullBox`).

use crate::FourCc;

/// Writes big-endian fields and nested boxes into a `Vec<u8>`.
///
/// Callers bound their input before writing, so every box fits the 32-bit size field; see
/// [`crate::MAX_CONFIG_SIZE`] and [`crate::MAX_FRAGMENT_SIZE`].
pub(crate) struct BoxWriter {
    buf: Vec<u8>,
}

impl BoxWriter {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        BoxWriter { buf: Vec::with_capacity(capacity) }
    }

    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far: the position the next field lands at.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Writes a box of type `kind` whose body `body` writes.
    pub(crate) fn boxed(&mut self, kind: &FourCc, body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.u32(0);
        self.bytes(kind);
        body(self);
        self.close(start);
    }

    /// Writes a `FullBox`: a box whose body opens with a version byte and 24 bits of flags.
    pub(crate) fn full(&mut self, kind: &FourCc, version: u8, flags: u32, body: impl FnOnce(&mut Self)) {
        self.boxed(kind, |w| {
            w.u32((u32::from(version) << 24) | (flags & 0x00FF_FFFF));
            body(w);
        });
    }

    /// Patches the size of the box that starts at `start` to reach the end of the buffer.
    fn close(&mut self, start: usize) {
        let size = self.buf.len() - start;
        debug_assert!(u32::try_from(size).is_ok(), "box of {size} bytes escaped the size limits");
        self.patch_u32(start, u32::try_from(size).unwrap_or(u32::MAX));
    }

    /// Overwrites the four bytes at `pos`, which must already have been written.
    pub(crate) fn patch_u32(&mut self, pos: usize, v: u32) {
        if let Some(dst) = self.buf.get_mut(pos..pos + 4) {
            dst.copy_from_slice(&v.to_be_bytes());
        }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes_are_patched() {
        let mut w = BoxWriter::with_capacity(0);
        w.boxed(b"moov", |w| {
            w.full(b"mvhd", 1, 0x000203, |w| w.u16(7));
            w.boxed(b"free", |_| {});
        });
        let out = w.into_inner();
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 30, b'm', b'o', b'o', b'v',
            0, 0, 0, 14, b'm', b'v', b'h', b'd', 1, 0x00, 0x02, 0x03, 0, 7,
            0, 0, 0, 8, b'f', b'r', b'e', b'e',
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn patch_outside_the_buffer_is_ignored() {
        let mut w = BoxWriter::with_capacity(0);
        w.u16(1);
        w.patch_u32(0, 9);
        assert_eq!(w.into_inner(), [0, 1]);
    }
}
