//! `hls_keys`: AES-128-CBC with PKCS#7 padding over a whole segment (RFC 8216 §4.3.2.4), the
//! IV being the key's id as a 128-bit big-endian number, as nginx-rtmp does.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

const BLOCK: usize = 16;

/// Encrypt `data` in place (it grows by 1–16 bytes of padding).
pub fn encrypt_segment(key: &[u8; 16], iv: u128, data: &mut Vec<u8>) {
    let pad = BLOCK - data.len() % BLOCK;
    data.resize(data.len() + pad, pad as u8);
    let cipher = Aes128::new(key.into());
    let mut prev = iv.to_be_bytes();
    for block in data.chunks_exact_mut(BLOCK) {
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        cipher.encrypt_block(block.into());
        prev.copy_from_slice(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_openssl_aes_128_cbc() {
        // printf 'sluice segment\n' | openssl enc -aes-128-cbc -K 000102030405060708090a0b0c0d0e0f
        //     -iv 00000000000000000000000000000007 | xxd -p
        let key: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut data = b"sluice segment\n".to_vec();
        encrypt_segment(&key, 7, &mut data);
        let expected = [0xa7, 0x8c, 0x96, 0x77, 0x71, 0x82, 0x16, 0xfa, 0x40, 0x95, 0x06, 0xcb, 0x45, 0xba, 0x90, 0x47];
        assert_eq!(data, expected);
        let mut two_blocks = vec![0u8; 16];
        encrypt_segment(&key, 7, &mut two_blocks);
        assert_eq!(two_blocks.len(), 32, "a whole block of padding follows full blocks");
        assert_ne!(&two_blocks[..16], &two_blocks[16..]);
    }
}
