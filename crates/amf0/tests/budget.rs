//! One budget of decoded bytes per message: amplifying input fails fast, and the memory the
//! decoder really allocates (measured by a counting allocator) stays near the budget.

#[path = "common/counting.rs"]
mod counting;

use counting::peak_during;

use amf0::{amf3, decode_all_with_budget, decoded_size, Amf0Error, Budget};

const BUDGET: usize = 1 << 20;

/// `U29` of AMF3 (AMF 3 spec 1.3.1), for values below 2^21.
fn u29(n: u32, out: &mut Vec<u8>) {
    assert!(n < 1 << 21);
    if n >= 1 << 14 {
        out.push(0x80 | (n >> 14) as u8);
    }
    if n >= 1 << 7 {
        out.push(0x80 | ((n >> 7) & 0x7F) as u8);
    }
    out.push((n & 0x7F) as u8);
}

/// AMF0 "connect", 1, then `values` AMF3 values (each behind its own 0x11) that are arrays of
/// `refs` references to one inner array of `inner` nulls: about 2 input bytes per reference,
/// each expanding to `inner` decoded values.
fn amf3_reference_bomb(values: usize, inner: u32, refs: u32) -> Vec<u8> {
    let mut out = amf0::encode_all(&["connect".into(), 1.0.into()]);
    for _ in 0..values {
        out.push(amf0::marker::AVMPLUS_OBJECT);
        out.push(amf3::marker::ARRAY);
        u29(((refs + 1) << 1) | 1, &mut out);
        out.push(0x01); // no associative part
        out.push(amf3::marker::ARRAY); // object 1: the inner array
        u29((inner << 1) | 1, &mut out);
        out.push(0x01);
        out.extend(std::iter::repeat_n(amf3::marker::NULL, inner as usize));
        for _ in 0..refs {
            out.push(amf3::marker::ARRAY);
            u29(1 << 1, &mut out); // reference to object 1
        }
    }
    out
}

#[test]
fn amf3_references_across_values_share_one_budget() {
    // ~60 KB: under the command size limit, ~3 GB if every reference were expanded.
    let bytes = amf3_reference_bomb(12, 1000, 2000);
    assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
    let mut budget = Budget::new(BUDGET);
    let (result, peak) = peak_during(|| decode_all_with_budget(&bytes, &mut budget));
    assert_eq!(result, Err(Amf0Error::BudgetExceeded { limit: BUDGET }));
    assert!(budget.used() <= BUDGET);
    assert!(peak <= 4 * BUDGET, "decoder allocated {peak} bytes for a {BUDGET}-byte budget");
}

#[test]
fn one_amf3_value_with_references_is_bounded_too() {
    // A large string and many references to it, in one AMF3 value.
    let mut bytes = vec![amf0::marker::AVMPLUS_OBJECT, amf3::marker::ARRAY];
    u29((30_000 << 1) | 1, &mut bytes);
    bytes.push(0x01);
    bytes.push(amf3::marker::STRING);
    u29((20_000 << 1) | 1, &mut bytes);
    bytes.extend(std::iter::repeat_n(b'x', 20_000));
    for _ in 1..30_000 {
        bytes.extend_from_slice(&[amf3::marker::STRING, 0x00]);
    }
    let mut budget = Budget::new(BUDGET);
    let (result, peak) = peak_during(|| decode_all_with_budget(&bytes, &mut budget));
    assert_eq!(result, Err(Amf0Error::BudgetExceeded { limit: BUDGET }));
    assert!(peak <= 4 * BUDGET, "decoder allocated {peak} bytes for a {BUDGET}-byte budget");
}

#[test]
fn amf0_strict_array_of_nulls_is_bounded() {
    // 64 KB of one-byte nulls would decode to ~48x that.
    let mut bytes = vec![amf0::marker::STRICT_ARRAY];
    bytes.extend_from_slice(&65_000u32.to_be_bytes());
    bytes.extend(std::iter::repeat_n(amf0::marker::NULL, 65_000));
    let mut budget = Budget::new(BUDGET);
    let (result, peak) = peak_during(|| decode_all_with_budget(&bytes, &mut budget));
    assert_eq!(result, Err(Amf0Error::BudgetExceeded { limit: BUDGET }));
    assert!(peak <= 4 * BUDGET, "decoder allocated {peak} bytes for a {BUDGET}-byte budget");
    // The default budget of decode_all holds the same line for bigger input.
    let mut big = vec![amf0::marker::STRICT_ARRAY];
    big.extend_from_slice(&1_000_000u32.to_be_bytes());
    big.extend(std::iter::repeat_n(amf0::marker::NULL, 1_000_000));
    assert_eq!(amf0::decode_all(&big), Err(Amf0Error::BudgetExceeded { limit: amf0::DEFAULT_BUDGET }));
}

#[test]
fn what_decodes_fits_the_budget_and_the_allocation() {
    // Small enough to fit: the decoded sizes add up to at most what was charged.
    let bytes = amf3_reference_bomb(2, 100, 50);
    let mut budget = Budget::new(BUDGET);
    let (values, peak) = peak_during(|| decode_all_with_budget(&bytes, &mut budget).unwrap());
    let size: usize = values.iter().map(decoded_size).sum();
    assert!(size <= budget.used(), "{size} > {}", budget.used());
    assert!(peak <= 4 * budget.used() + 4096, "{peak} for {} charged", budget.used());
    let amf0::Value::StrictArray(outer) = &values[2] else { panic!("{:?}", values[2]) };
    assert_eq!(outer.len(), 51);
    assert_eq!(outer[50], amf0::Value::StrictArray(vec![amf0::Value::Null; 100]));
}

#[test]
fn nested_reservations_are_charged() {
    // Found by fuzz/fuzz_targets/amf3_refs.rs: every nested array reserved room for as many
    // elements as input was left, charging none of it until the elements arrived, so 60 levels
    // allocated ~60 times the budget. Reservations are charged now.
    let budget_limit = 64 << 10;
    let mut bytes = Vec::new();
    for _ in 0..60 {
        bytes.push(amf0::marker::STRICT_ARRAY);
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    bytes.extend(std::iter::repeat_n(amf0::marker::NULL, 1000));
    let mut amf3_bytes = vec![amf0::marker::AVMPLUS_OBJECT];
    for _ in 0..60 {
        amf3_bytes.extend_from_slice(&[amf3::marker::ARRAY, 0xFF, 0xFF, 0x7F, 0x01]);
    }
    amf3_bytes.extend(std::iter::repeat_n(amf3::marker::NULL, 1000));
    for input in [bytes, amf3_bytes] {
        let mut budget = Budget::new(budget_limit);
        let (result, peak) = peak_during(|| decode_all_with_budget(&input, &mut budget));
        assert!(result.is_err());
        assert!(peak <= 2 * budget_limit + 4096, "allocated {peak} bytes for a {budget_limit}-byte budget");
    }
}
