//! AMF0 (and the AMF3 subset RTMP needs): I/O-free encoding and decoding.
//!
//! | Spec | Used for |
//! | --- | --- |
//! | Action Message Format -- AMF 0 (Adobe, 2007) | [`decode`], [`encode`], [`Value`] |
//! | Action Message Format -- AMF 3 (Adobe, 2013) | [`amf3::decode`], reached from AMF0 through the `avmplus-object-marker` (0x11) |
//! | RTMP spec 1.0, 7.1.1 (command messages 20 and 17) | what the decoded values carry |
//!
//! Every function works on byte slices and never panics on malformed input: truncation, unknown
//! markers and too deep nesting ([`MAX_DEPTH`]) all become an [`Amf0Error`]. Memory is bounded
//! too: all values of one message share one [`Budget`] of decoded bytes ([`decoded_size`]),
//! AMF3 reference copies included, and exceeding it is [`Amf0Error::BudgetExceeded`].
//!
//! RTMP AMF3 command messages (message type 17) carry one format byte (0x00) and then ordinary
//! AMF0 values, some of which may switch to AMF3 with marker 0x11; skip the first byte and call
//! [`decode_all`] on the rest.
#![deny(missing_docs, unsafe_code, unreachable_pub)]

pub mod amf3;
mod budget;
mod decode;
mod encode;
mod error;
mod value;

pub use budget::{decoded_size, Budget, DEFAULT_BUDGET};
pub use decode::{decode, decode_all, decode_all_with_budget, decode_with_budget, MAX_DEPTH};
pub use encode::{encode, encode_all};
pub use error::Amf0Error;
pub use value::Value;

/// AMF0 type markers. Defined by: AMF 0 spec, 2.1.
pub mod marker {
    /// `number-marker`: IEEE-754 double, big endian.
    pub const NUMBER: u8 = 0x00;
    /// `boolean-marker`: one byte, 0 is false.
    pub const BOOLEAN: u8 = 0x01;
    /// `string-marker`: u16 length + UTF-8.
    pub const STRING: u8 = 0x02;
    /// `object-marker`: properties until the object end.
    pub const OBJECT: u8 = 0x03;
    /// `movieclip-marker`: reserved, not supported.
    pub const MOVIECLIP: u8 = 0x04;
    /// `null-marker`.
    pub const NULL: u8 = 0x05;
    /// `undefined-marker`.
    pub const UNDEFINED: u8 = 0x06;
    /// `reference-marker`: u16 index of an earlier complex value.
    pub const REFERENCE: u8 = 0x07;
    /// `ecma-array-marker`: u32 count hint, then properties until the object end.
    pub const ECMA_ARRAY: u8 = 0x08;
    /// `object-end-marker`, preceded by an empty UTF-8 key.
    pub const OBJECT_END: u8 = 0x09;
    /// `strict-array-marker`: u32 count, then values.
    pub const STRICT_ARRAY: u8 = 0x0A;
    /// `date-marker`: f64 milliseconds + i16 time zone.
    pub const DATE: u8 = 0x0B;
    /// `long-string-marker`: u32 length + UTF-8.
    pub const LONG_STRING: u8 = 0x0C;
    /// `unsupported-marker`.
    pub const UNSUPPORTED: u8 = 0x0D;
    /// `recordset-marker`: reserved, not supported.
    pub const RECORDSET: u8 = 0x0E;
    /// `xml-document-marker`: u32 length + UTF-8.
    pub const XML_DOCUMENT: u8 = 0x0F;
    /// `typed-object-marker`: class name, then properties until the object end.
    pub const TYPED_OBJECT: u8 = 0x10;
    /// `avmplus-object-marker`: the next value is AMF3.
    pub const AVMPLUS_OBJECT: u8 = 0x11;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn connect_command_bytes() {
        let values = [
            Value::from("connect"),
            Value::from(1.0),
            Value::object([
                ("app", "live".into()),
                ("tcUrl", "rtmp://localhost/live".into()),
                ("fpad", false.into()),
                ("audioCodecs", 3575.0.into()),
                ("objectEncoding", 0.0.into()),
            ]),
        ];
        let mut expected = Vec::new();
        expected.extend_from_slice(b"\x02\x00\x07connect");
        expected.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        expected.push(0x03);
        expected.extend_from_slice(b"\x00\x03app\x02\x00\x04live");
        expected.extend_from_slice(b"\x00\x05tcUrl\x02\x00\x15rtmp://localhost/live");
        expected.extend_from_slice(b"\x00\x04fpad\x01\x00");
        expected.extend_from_slice(b"\x00\x0baudioCodecs\x00\x40\xab\xee\x00\x00\x00\x00\x00");
        expected.extend_from_slice(b"\x00\x0eobjectEncoding\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        expected.extend_from_slice(b"\x00\x00\x09");
        assert_eq!(encode_all(&values), expected);
        let decoded = decode_all(&expected).unwrap();
        assert_eq!(decoded, values);
        assert_eq!(decoded[0].as_str(), Some("connect"));
        assert_eq!(decoded[1].as_f64(), Some(1.0));
        assert_eq!(decoded[2].get("fpad").and_then(Value::as_bool), Some(false));
        assert_eq!(decoded[2].get("missing"), None);
    }

    #[test]
    fn decode_advances_slice() {
        let bytes = encode_all(&[Value::Null, 2.0.into()]);
        let mut buf = &bytes[..];
        assert_eq!(decode(&mut buf), Ok(Value::Null));
        assert_eq!(buf.len(), 9);
        assert_eq!(decode(&mut buf), Ok(Value::Number(2.0)));
        assert!(buf.is_empty());
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // onMetaData-style ECMA array whose count says 0 but holds one property.
        let bytes = b"\x08\x00\x00\x00\x00\x00\x05width\x00\x40\x94\x00\x00\x00\x00\x00\x00\x00\x00\x09";
        let v = decode_all(bytes).unwrap();
        assert_eq!(v, vec![Value::ecma_array([("width", 1280.0.into())])]);
    }

    #[test]
    fn long_string_and_unsupported() {
        let long = "x".repeat(70_000);
        let bytes = encode_all(&[long.clone().into()]);
        assert_eq!(bytes[0], marker::LONG_STRING);
        assert_eq!(decode_all(&bytes).unwrap(), vec![Value::String(long)]);
        assert_eq!(decode_all(&[0x0D]).unwrap(), vec![Value::Undefined]);
    }

    #[test]
    fn errors() {
        assert_eq!(decode_all(&[0x02, 0x00, 0x05, b'a']), Err(Amf0Error::UnexpectedEof { needed: 4 }));
        assert_eq!(decode_all(&[0x04]), Err(Amf0Error::UnknownMarker(0x04)));
        assert_eq!(decode_all(&[0x12]), Err(Amf0Error::UnknownMarker(0x12)));
        assert_eq!(decode_all(&[0x07, 0x00, 0x01]), Err(Amf0Error::Reference(1)));
        // Object without its end marker.
        assert!(matches!(decode_all(&[0x03, 0x00, 0x01, b'a', 0x05]), Err(Amf0Error::UnexpectedEof { .. })));
        // Huge strict array count with no data must not allocate or panic.
        assert!(matches!(decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]), Err(Amf0Error::UnexpectedEof { .. })));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        assert_eq!(decode_all(&bytes), Err(Amf0Error::TooDeep { limit: MAX_DEPTH }));
        // Exactly MAX_DEPTH levels are fine.
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Value::StrictArray(vec![v]);
        }
        assert_eq!(decode_all(&encode_all(&[v.clone()])).unwrap(), vec![v]);
    }

    #[test]
    fn amf3_switch() {
        // An AMF3 command message body after its 0x00 format byte: "connect", 1, then an
        // AMF3 object { app: "live" } behind the avmplus marker.
        let mut bytes = encode_all(&["connect".into(), 1.0.into()]);
        bytes.extend_from_slice(&[0x11, 0x0A, 0x0B, 0x01, 0x07, b'a', b'p', b'p']);
        bytes.extend_from_slice(&[0x06, 0x09, b'l', b'i', b'v', b'e', 0x01]);
        let v = decode_all(&bytes).unwrap();
        assert_eq!(v[2], Value::object([("app", "live".into())]));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            // NaN != NaN would break equality; every other double round-trips bit for bit.
            any::<f64>().prop_filter("not NaN", |n| !n.is_nan()).prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,20}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            (any::<f64>().prop_filter("not NaN", |n| !n.is_nan()), any::<i16>())
                .prop_map(|(millis, tz)| Value::Date { millis, tz }),
            ".{0,20}".prop_map(Value::XmlDocument),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            let props = prop::collection::vec((".{0,10}", inner.clone()), 0..8);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                props.clone().prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..8).prop_map(Value::StrictArray),
                (".{0,10}", props).prop_map(|(class_name, properties)| Value::TypedObject { class_name, properties }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(arb_value(), 0..4)) {
            let bytes = encode_all(&values);
            prop_assert_eq!(decode_all(&bytes).unwrap(), values);
        }

        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes);
            let mut b = &bytes[..];
            let _ = amf3::decode(&mut b);
        }

        #[test]
        fn never_panics_amf3_prefixed(bytes in prop::collection::vec(0u8..0x0C, 0..256)) {
            // Bytes restricted to valid AMF3 markers reach deeper into the decoder.
            let mut b = &bytes[..];
            let _ = amf3::decode(&mut b);
        }
    }
}
