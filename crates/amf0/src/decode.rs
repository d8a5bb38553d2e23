use crate::budget::{Budget, DEFAULT_BUDGET, KEY, VALUE};
use crate::{amf3, marker, Amf0Error, Value};

/// How deeply objects and arrays may nest (AMF0 and AMF3 together) before decoding fails with
/// [`Amf0Error::TooDeep`]. Keeps hostile input from overflowing the stack.
pub const MAX_DEPTH: usize = 64;

/// Decodes one AMF0 value from the front of `buf` and advances `buf` past it, within
/// [`DEFAULT_BUDGET`] bytes of decoded values.
///
/// On error `buf` is left somewhere inside the failed value.
pub fn decode(buf: &mut &[u8]) -> Result<Value, Amf0Error> {
    decode_with_budget(buf, &mut Budget::new(DEFAULT_BUDGET))
}

/// Decodes one AMF0 value like [`decode`], charging what it decodes to `budget`.
pub fn decode_with_budget(buf: &mut &[u8], budget: &mut Budget) -> Result<Value, Amf0Error> {
    decode_value(buf, 0, budget)
}

/// Decodes AMF0 values until `buf` is empty, as in the body of an RTMP command or data message,
/// within [`DEFAULT_BUDGET`] bytes of decoded values for all of them together.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    decode_all_with_budget(buf, &mut Budget::new(DEFAULT_BUDGET))
}

/// Decodes AMF0 values until `buf` is empty, charging all of them to one `budget`: give each
/// message its own.
pub fn decode_all_with_budget(mut buf: &[u8], budget: &mut Budget) -> Result<Vec<Value>, Amf0Error> {
    let mut values = Vec::new();
    while !buf.is_empty() {
        values.push(decode_value(&mut buf, 0, budget)?);
    }
    Ok(values)
}

pub(crate) fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], Amf0Error> {
    if buf.len() < n {
        return Err(Amf0Error::UnexpectedEof { needed: n - buf.len() });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

pub(crate) fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], Amf0Error> {
    let mut out = [0; N];
    out.copy_from_slice(take(buf, N)?);
    Ok(out)
}

pub(crate) fn read_u8(buf: &mut &[u8]) -> Result<u8, Amf0Error> {
    Ok(take_array::<1>(buf)?[0])
}

fn read_u16(buf: &mut &[u8]) -> Result<u16, Amf0Error> {
    Ok(u16::from_be_bytes(take_array(buf)?))
}

fn read_u32(buf: &mut &[u8]) -> Result<u32, Amf0Error> {
    Ok(u32::from_be_bytes(take_array(buf)?))
}

pub(crate) fn read_f64(buf: &mut &[u8]) -> Result<f64, Amf0Error> {
    Ok(f64::from_be_bytes(take_array(buf)?))
}

/// Strings are decoded lossily: invalid UTF-8 becomes U+FFFD instead of an error, since some
/// encoders send Latin-1 in metadata. The string's bytes are charged to `budget` (a
/// replacement character can take more bytes than what it replaces: charged too).
pub(crate) fn utf8(bytes: &[u8], budget: &mut Budget) -> Result<String, Amf0Error> {
    budget.charge(bytes.len())?;
    let s = String::from_utf8_lossy(bytes).into_owned();
    budget.charge(s.len().saturating_sub(bytes.len()))?;
    Ok(s)
}

/// `UTF-8`: u16 length + bytes. Defined by: AMF 0 spec, 1.3.1.
fn read_utf8(buf: &mut &[u8], budget: &mut Budget) -> Result<String, Amf0Error> {
    let len = read_u16(buf)?;
    utf8(take(buf, len.into())?, budget)
}

/// `UTF-8-long`: u32 length + bytes. Defined by: AMF 0 spec, 1.3.1.
fn read_utf8_long(buf: &mut &[u8], budget: &mut Budget) -> Result<String, Amf0Error> {
    let len = read_u32(buf)?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    utf8(take(buf, len)?, budget)
}

pub(crate) fn check_depth(depth: usize) -> Result<(), Amf0Error> {
    if depth >= MAX_DEPTH {
        return Err(Amf0Error::TooDeep { limit: MAX_DEPTH });
    }
    Ok(())
}

fn decode_value(buf: &mut &[u8], depth: usize, budget: &mut Budget) -> Result<Value, Amf0Error> {
    let m = read_u8(buf)?;
    if m == marker::AVMPLUS_OBJECT {
        return amf3::decode_at_depth(buf, depth, budget);
    }
    budget.charge(VALUE)?;
    Ok(match m {
        marker::NUMBER => Value::Number(read_f64(buf)?),
        marker::BOOLEAN => Value::Boolean(read_u8(buf)? != 0),
        marker::STRING => Value::String(read_utf8(buf, budget)?),
        marker::OBJECT => {
            check_depth(depth)?;
            Value::Object(read_properties(buf, depth + 1, budget)?)
        }
        marker::NULL => Value::Null,
        marker::UNDEFINED | marker::UNSUPPORTED => Value::Undefined,
        marker::REFERENCE => return Err(Amf0Error::Reference(read_u16(buf)?)),
        marker::ECMA_ARRAY => {
            check_depth(depth)?;
            // The count is only a hint (many encoders write 0); the end marker is what counts.
            let _count = read_u32(buf)?;
            Value::EcmaArray(read_properties(buf, depth + 1, budget)?)
        }
        marker::STRICT_ARRAY => {
            check_depth(depth)?;
            let count = read_u32(buf)?;
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let capacity = budget.reserve(count, buf.len(), VALUE);
            let mut items = Vec::with_capacity(capacity);
            for i in 0..count {
                items.push(decode_value(buf, depth + 1, budget)?);
                if i < capacity {
                    budget.refund(VALUE);
                }
            }
            Value::StrictArray(items)
        }
        marker::DATE => {
            let millis = read_f64(buf)?;
            let tz = i16::from_be_bytes(take_array(buf)?);
            Value::Date { millis, tz }
        }
        marker::LONG_STRING => Value::String(read_utf8_long(buf, budget)?),
        marker::XML_DOCUMENT => Value::XmlDocument(read_utf8_long(buf, budget)?),
        marker::TYPED_OBJECT => {
            check_depth(depth)?;
            let class_name = read_utf8(buf, budget)?;
            let properties = read_properties(buf, depth + 1, budget)?;
            Value::TypedObject { class_name, properties }
        }
        other => return Err(Amf0Error::UnknownMarker(other)),
    })
}

/// `object-property`s up to `object-end-type` (empty key + 0x09). Defined by: AMF 0 spec, 2.5.
fn read_properties(buf: &mut &[u8], depth: usize, budget: &mut Budget) -> Result<Vec<(String, Value)>, Amf0Error> {
    let mut props = Vec::new();
    loop {
        let key = read_utf8(buf, budget)?;
        if key.is_empty() && buf.first() == Some(&marker::OBJECT_END) {
            *buf = &buf[1..];
            return Ok(props);
        }
        budget.charge(KEY)?;
        let value = decode_value(buf, depth, budget)?;
        props.push((key, value));
    }
}
