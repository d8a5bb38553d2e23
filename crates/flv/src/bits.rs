//! Big-endian bit reader with Exp-Golomb codes, for SPS and sequence header OBU parsing.

use crate::FlvError;

/// Reads bits MSB first. Every read past the end is an error, never a panic.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// `what` names the structure in [`FlvError::Truncated`].
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    pub(crate) fn bit(&mut self) -> Result<bool, FlvError> {
        let byte = self.data.get(self.pos / 8).ok_or(FlvError::Truncated(self.what))?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` bits, `n <= 32`.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32, FlvError> {
        debug_assert!(n <= 32);
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        Ok(v as u32)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), FlvError> {
        let end = self.pos.saturating_add(n);
        if end > self.data.len() * 8 {
            return Err(FlvError::Truncated(self.what));
        }
        self.pos = end;
        Ok(())
    }

    /// `ue(v)`. Defined by: ISO/IEC 14496-10, 9.1 (same in H.265, 9.2).
    pub(crate) fn ue(&mut self) -> Result<u32, FlvError> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(FlvError::Invalid("Exp-Golomb code longer than 32 bits"));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// `se(v)`. Defined by: ISO/IEC 14496-10, 9.1.1.
    pub(crate) fn se(&mut self) -> Result<i32, FlvError> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        Ok(v as i32)
    }

    /// `uvlc()`. Defined by: AV1 spec, 4.10.3.
    pub(crate) fn uvlc(&mut self) -> Result<u32, FlvError> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Ok(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`) from a NAL unit.
/// Defined by: ISO/IEC 14496-10, 7.4.1.
pub(crate) fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 => ue 0, 1, 2, 3, 4 ; then se reads.
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        let got: Vec<u32> = (0..5).map(|_| r.ue().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        let data = [0b0100_1100];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
        assert_eq!(r.ue(), Err(FlvError::Truncated("test")));
    }

    #[test]
    fn emulation_prevention() {
        assert_eq!(rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]), [0, 0, 1, 0, 0, 0, 3]);
    }
}
