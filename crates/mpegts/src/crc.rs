//! CRC-32/MPEG-2 over PSI sections. Defined by: ISO/IEC 13818-1, Annex A (polynomial
//! 0x04C11DB7, initial value all ones, no bit reflection, no final XOR).

const POLY: u32 = 0x04C1_1DB7;

/// One entry per leading byte, built at compile time.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ POLY } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The CRC_32 field value for `data` (a section from table_id up to, not including, the CRC).
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // The catalogued check value of CRC-32/MPEG-2 over "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn section_with_its_crc_sums_to_zero() {
        // ffmpeg's PAT section (program 1 on PID 0x1000) and the CRC it wrote.
        let pat = [0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00];
        assert_eq!(crc32_mpeg2(&pat), 0x2ab1_04b2);
        let mut whole = pat.to_vec();
        whole.extend_from_slice(&0x2ab1_04b2u32.to_be_bytes());
        assert_eq!(crc32_mpeg2(&whole), 0);
    }
}
