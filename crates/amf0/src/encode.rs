use crate::{marker, Value};

/// Appends the AMF0 encoding of `value` to `out`.
///
/// Strings longer than 65535 bytes use the long-string form (XML is always long). Object keys
/// longer than 65535 bytes cannot be expressed in AMF0 and are cut at a character boundary.
/// Encoding recurses once per nesting level; values built by [`crate::decode`] are at most
/// [`crate::MAX_DEPTH`] deep.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => {
                out.push(marker::LONG_STRING);
                write_utf8_long(s, out);
            }
        },
        Value::Object(props) => {
            out.push(marker::OBJECT);
            write_properties(props, out);
        }
        Value::Null => out.push(marker::NULL),
        Value::Undefined => out.push(marker::UNDEFINED),
        Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&len_u32(props.len()).to_be_bytes());
            write_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            out.extend_from_slice(&len_u32(items.len()).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Date { millis, tz } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&tz.to_be_bytes());
        }
        Value::XmlDocument(s) => {
            out.push(marker::XML_DOCUMENT);
            write_utf8_long(s, out);
        }
        Value::TypedObject { class_name, properties } => {
            out.push(marker::TYPED_OBJECT);
            write_utf8(class_name, out);
            write_properties(properties, out);
        }
    }
}

/// Encodes `values` one after another, as in the body of an RTMP command or data message.
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn write_utf8(s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` fits in u16 by construction.
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn write_utf8_long(s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(u32::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn write_properties(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        write_utf8(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
}
