//! Minimal AMF3 decoder, for values that AMF0 switches to with the `avmplus-object-marker`.
//!
//! Defined by: AMF 3 spec (Adobe, 2013), section 3. Supported: undefined, null, false, true,
//! integer, double, string, XMLDocument, date, array, object (sealed and dynamic members, traits
//! and object references) and XML. Byte arrays, vectors, dictionaries and externalizable objects
//! are rejected. Values map onto the AMF0 [`Value`] as described there.
//!
//! Each call of [`decode`] starts with empty reference tables. References copy the value they
//! point at, and each copy is charged to the message's [`Budget`] again (so are the copies the
//! reference tables keep), so a few bytes of references cannot expand into gigabytes.

use std::mem::size_of;

use crate::budget::{decoded_size, Budget, DEFAULT_BUDGET, KEY, VALUE};
use crate::decode::{check_depth, read_f64, read_u8, take, utf8};
use crate::{Amf0Error, Value};

/// AMF3 type markers. Defined by: AMF 3 spec, 3.1.
pub mod marker {
    /// `undefined-marker`.
    pub const UNDEFINED: u8 = 0x00;
    /// `null-marker`.
    pub const NULL: u8 = 0x01;
    /// `false-marker`.
    pub const FALSE: u8 = 0x02;
    /// `true-marker`.
    pub const TRUE: u8 = 0x03;
    /// `integer-marker`: 29-bit signed integer in U29 form.
    pub const INTEGER: u8 = 0x04;
    /// `double-marker`.
    pub const DOUBLE: u8 = 0x05;
    /// `string-marker`.
    pub const STRING: u8 = 0x06;
    /// `xml-doc-marker`.
    pub const XML_DOC: u8 = 0x07;
    /// `date-marker`.
    pub const DATE: u8 = 0x08;
    /// `array-marker`.
    pub const ARRAY: u8 = 0x09;
    /// `object-marker`.
    pub const OBJECT: u8 = 0x0A;
    /// `xml-marker`.
    pub const XML: u8 = 0x0B;
    /// `byte-array-marker` (not supported).
    pub const BYTE_ARRAY: u8 = 0x0C;
}

/// Decodes one AMF3 value from the front of `buf` and advances `buf` past it, within
/// [`DEFAULT_BUDGET`] bytes of decoded values.
pub fn decode(buf: &mut &[u8]) -> Result<Value, Amf0Error> {
    decode_with_budget(buf, &mut Budget::new(DEFAULT_BUDGET))
}

/// Decodes one AMF3 value like [`decode`], charging what it decodes to `budget`.
pub fn decode_with_budget(buf: &mut &[u8], budget: &mut Budget) -> Result<Value, Amf0Error> {
    decode_at_depth(buf, 0, budget)
}

pub(crate) fn decode_at_depth(buf: &mut &[u8], depth: usize, budget: &mut Budget) -> Result<Value, Amf0Error> {
    let mut ctx = Context { strings: Vec::new(), objects: Vec::new(), traits: Vec::new(), budget };
    ctx.value(buf, depth)
}

struct Traits {
    class_name: String,
    dynamic: bool,
    members: Vec<String>,
}

/// An object table entry: the value and its [`decoded_size`], charged again for every copy.
/// `None` while the object is still being decoded: a reference to it would be a cycle.
type Slot = Option<(Value, usize)>;

struct Context<'b> {
    strings: Vec<String>,
    objects: Vec<Slot>,
    traits: Vec<Traits>,
    budget: &'b mut Budget,
}

/// `U29`: 1 to 4 bytes, 7 bits each except the 4th which gives 8. Defined by: AMF 3 spec, 1.3.1.
fn read_u29(buf: &mut &[u8]) -> Result<u32, Amf0Error> {
    let mut value = 0u32;
    for _ in 0..3 {
        let b = read_u8(buf)?;
        value = (value << 7) | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    let b = read_u8(buf)?;
    Ok((value << 8) | u32::from(b))
}

impl Context<'_> {
    fn charge(&mut self, amount: usize) -> Result<(), Amf0Error> {
        self.budget.charge(amount)
    }

    fn value(&mut self, buf: &mut &[u8], depth: usize) -> Result<Value, Amf0Error> {
        let m = read_u8(buf)?;
        self.charge(VALUE)?;
        Ok(match m {
            marker::UNDEFINED => Value::Undefined,
            marker::NULL => Value::Null,
            marker::FALSE => Value::Boolean(false),
            marker::TRUE => Value::Boolean(true),
            marker::INTEGER => {
                let raw = read_u29(buf)?;
                // Sign-extend from 29 bits.
                let n = ((raw << 3) as i32) >> 3;
                Value::Number(n.into())
            }
            marker::DOUBLE => Value::Number(read_f64(buf)?),
            marker::STRING => Value::String(self.string(buf)?),
            marker::XML_DOC | marker::XML => {
                let header = read_u29(buf)?;
                if let Some(v) = self.object_ref(header)? {
                    return Ok(v);
                }
                let v = Value::XmlDocument(utf8(take(buf, (header >> 1) as usize)?, self.budget)?);
                self.remember(&v)?;
                v
            }
            marker::DATE => {
                let header = read_u29(buf)?;
                if let Some(v) = self.object_ref(header)? {
                    return Ok(v);
                }
                let v = Value::Date { millis: read_f64(buf)?, tz: 0 };
                self.remember(&v)?;
                v
            }
            marker::ARRAY => self.array(buf, depth)?,
            marker::OBJECT => self.object(buf, depth)?,
            other => return Err(Amf0Error::UnsupportedAmf3Marker(other)),
        })
    }

    /// `UTF-8-vr`: inline string or string table reference. Defined by: AMF 3 spec, 1.3.2.
    fn string(&mut self, buf: &mut &[u8]) -> Result<String, Amf0Error> {
        let header = read_u29(buf)?;
        let index = (header >> 1) as usize;
        if header & 1 == 0 {
            let s = self.strings.get(index).ok_or(Amf0Error::BadAmf3Reference { table: "string", index })?;
            self.budget.charge(s.len())?;
            return Ok(s.clone());
        }
        let s = utf8(take(buf, index)?, self.budget)?;
        if !s.is_empty() {
            // The table keeps its own copy.
            self.charge(KEY + s.len())?;
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// A string that becomes a property key: the key's inline part is charged too.
    fn key(&mut self, buf: &mut &[u8]) -> Result<String, Amf0Error> {
        let key = self.string(buf)?;
        self.charge(KEY)?;
        Ok(key)
    }

    /// Resolves `header` as an object reference if its low bit is 0.
    fn object_ref(&mut self, header: u32) -> Result<Option<Value>, Amf0Error> {
        if header & 1 != 0 {
            return Ok(None);
        }
        let index = (header >> 1) as usize;
        let (v, size) = self
            .objects
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(Amf0Error::BadAmf3Reference { table: "object", index })?;
        // The value's inline part was charged when its marker was read.
        self.budget.charge(size - VALUE)?;
        Ok(Some(v.clone()))
    }

    fn remember(&mut self, v: &Value) -> Result<(), Amf0Error> {
        let slot = self.reserve()?;
        self.fill(slot, v)
    }

    fn reserve(&mut self) -> Result<usize, Amf0Error> {
        self.charge(size_of::<Slot>())?;
        self.objects.push(None);
        Ok(self.objects.len() - 1)
    }

    /// Stores the table's copy of `v`, charged in full.
    fn fill(&mut self, slot: usize, v: &Value) -> Result<(), Amf0Error> {
        let size = decoded_size(v);
        self.charge(size)?;
        self.objects[slot] = Some((v.clone(), size));
        Ok(())
    }

    /// Defined by: AMF 3 spec, 3.12.
    fn array(&mut self, buf: &mut &[u8], depth: usize) -> Result<Value, Amf0Error> {
        let header = read_u29(buf)?;
        if let Some(v) = self.object_ref(header)? {
            return Ok(v);
        }
        check_depth(depth)?;
        let slot = self.reserve()?;
        let dense_len = (header >> 1) as usize;
        let mut assoc = Vec::new();
        loop {
            let key = self.key(buf)?;
            if key.is_empty() {
                break;
            }
            let v = self.value(buf, depth + 1)?;
            assoc.push((key, v));
        }
        let capacity = self.budget.reserve(dense_len, buf.len(), VALUE);
        let mut dense = Vec::with_capacity(capacity);
        for i in 0..dense_len {
            dense.push(self.value(buf, depth + 1)?);
            if i < capacity {
                self.budget.refund(VALUE);
            }
        }
        let v = if assoc.is_empty() {
            Value::StrictArray(dense)
        } else {
            // Dense entries get keys "0", "1", ...: new strings, charged.
            let keys: usize = (0..dense.len()).map(|i| KEY + decimal_len(i)).sum();
            self.charge(keys)?;
            assoc.extend(dense.into_iter().enumerate().map(|(i, v)| (i.to_string(), v)));
            Value::EcmaArray(assoc)
        };
        self.fill(slot, &v)?;
        Ok(v)
    }

    /// Defined by: AMF 3 spec, 3.12.
    fn object(&mut self, buf: &mut &[u8], depth: usize) -> Result<Value, Amf0Error> {
        let header = read_u29(buf)?;
        if let Some(v) = self.object_ref(header)? {
            return Ok(v);
        }
        check_depth(depth)?;
        let slot = self.reserve()?;
        let traits_index = if header & 0b10 == 0 {
            let index = (header >> 2) as usize;
            self.traits.get(index).ok_or(Amf0Error::BadAmf3Reference { table: "traits", index })?;
            index
        } else if header & 0b100 != 0 {
            let class_name = self.string(buf)?;
            return Err(Amf0Error::Externalizable(class_name));
        } else {
            self.inline_traits(header, buf)?
        };
        let member_count = self.traits[traits_index].members.len();
        let capacity = self.budget.reserve(member_count, buf.len(), KEY + VALUE);
        let mut props = Vec::with_capacity(capacity);
        for i in 0..member_count {
            let v = self.value(buf, depth + 1)?;
            let key = &self.traits[traits_index].members[i];
            self.budget.charge(KEY + key.len())?;
            props.push((key.clone(), v));
            if i < capacity {
                self.budget.refund(KEY + VALUE);
            }
        }
        if self.traits[traits_index].dynamic {
            loop {
                let key = self.key(buf)?;
                if key.is_empty() {
                    break;
                }
                let v = self.value(buf, depth + 1)?;
                props.push((key, v));
            }
        }
        let class_name = &self.traits[traits_index].class_name;
        let v = if class_name.is_empty() {
            Value::Object(props)
        } else {
            self.budget.charge(class_name.len())?;
            Value::TypedObject { class_name: class_name.clone(), properties: props }
        };
        self.fill(slot, &v)?;
        Ok(v)
    }

    /// Reads inline traits (class name, sealed member names) into the traits table.
    fn inline_traits(&mut self, header: u32, buf: &mut &[u8]) -> Result<usize, Amf0Error> {
        let dynamic = header & 0b1000 != 0;
        let count = (header >> 4) as usize;
        self.charge(size_of::<Traits>())?;
        let class_name = self.string(buf)?;
        let capacity = self.budget.reserve(count, buf.len(), KEY);
        let mut members = Vec::with_capacity(capacity);
        for i in 0..count {
            members.push(self.key(buf)?);
            if i < capacity {
                self.budget.refund(KEY);
            }
        }
        self.traits.push(Traits { class_name, dynamic, members });
        Ok(self.traits.len() - 1)
    }
}

/// Digits of `n` in decimal.
fn decimal_len(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<Value, Amf0Error> {
        let mut b = bytes;
        let v = decode(&mut b)?;
        assert!(b.is_empty(), "{} trailing bytes", b.len());
        Ok(v)
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(&[0x00]), Ok(Value::Undefined));
        assert_eq!(dec(&[0x01]), Ok(Value::Null));
        assert_eq!(dec(&[0x02]), Ok(Value::Boolean(false)));
        assert_eq!(dec(&[0x03]), Ok(Value::Boolean(true)));
        assert_eq!(dec(&[0x04, 0x05]), Ok(Value::Number(5.0)));
        assert_eq!(dec(&[0x04, 0x81, 0x00]), Ok(Value::Number(128.0)));
        // -1 is 0x1FFFFFFF in 29 bits.
        assert_eq!(dec(&[0x04, 0xFF, 0xFF, 0xFF, 0xFF]), Ok(Value::Number(-1.0)));
        // Largest positive: 0x0FFFFFFF.
        assert_eq!(dec(&[0x04, 0xBF, 0xFF, 0xFF, 0xFF]), Ok(Value::Number(268_435_455.0)));
        let mut d = vec![0x05];
        d.extend_from_slice(&1.5f64.to_be_bytes());
        assert_eq!(dec(&d), Ok(Value::Number(1.5)));
    }

    #[test]
    fn string_references() {
        // Array [ "ab", ref 0 ]: dense length 2, no assoc part.
        let bytes = [0x09, 0x05, 0x01, 0x06, 0x05, b'a', b'b', 0x06, 0x00];
        assert_eq!(dec(&bytes), Ok(Value::StrictArray(vec!["ab".into(), "ab".into()])));
        assert_eq!(dec(&[0x06, 0x02]), Err(Amf0Error::BadAmf3Reference { table: "string", index: 1 }));
    }

    #[test]
    fn anonymous_dynamic_object() {
        // U29O-traits: dynamic (0x08), not externalizable, inline traits (0x02), inline (0x01),
        // no sealed members => 0x0B. Class name "" (0x01). Then "a" => int 1, "" end.
        let bytes = [0x0A, 0x0B, 0x01, 0x03, b'a', 0x04, 0x01, 0x01];
        assert_eq!(dec(&bytes), Ok(Value::object([("a", 1.0.into())])));
    }

    #[test]
    fn sealed_typed_object_and_traits_reference() {
        // Array of two objects of class "C" with sealed member "x"; the second reuses traits 0.
        let bytes = [
            0x09, 0x05, 0x01, // array, dense 2, no assoc
            0x0A, 0x13, 0x03, b'C', 0x03, b'x', 0x04, 0x07, // {x: 7}, 1 sealed, not dynamic
            0x0A, 0x01, 0x04, 0x08, // traits ref 0: header 0b0001 => index 0, {x: 8}
        ];
        let obj = |n: f64| Value::TypedObject { class_name: "C".into(), properties: vec![("x".into(), n.into())] };
        assert_eq!(dec(&bytes), Ok(Value::StrictArray(vec![obj(7.0), obj(8.0)])));
    }

    #[test]
    fn object_reference_and_cycle() {
        // [ {}, ref to object 1 ]: object 0 is the array itself, object 1 the empty object.
        let bytes = [0x09, 0x05, 0x01, 0x0A, 0x0B, 0x01, 0x01, 0x0A, 0x02];
        let empty = Value::Object(vec![]);
        assert_eq!(dec(&bytes), Ok(Value::StrictArray(vec![empty.clone(), empty])));
        // An array containing a reference to itself.
        assert_eq!(
            dec(&[0x09, 0x03, 0x01, 0x09, 0x00]),
            Err(Amf0Error::BadAmf3Reference { table: "object", index: 0 })
        );
    }

    #[test]
    fn mixed_array() {
        // assoc "k" => true, dense [null]
        let bytes = [0x09, 0x03, 0x03, b'k', 0x03, 0x01, 0x01];
        assert_eq!(dec(&bytes), Ok(Value::ecma_array([("k", true.into()), ("0", Value::Null)])));
    }

    fn u29(n: u32, out: &mut Vec<u8>) {
        match n {
            0..=0x7F => out.push(n as u8),
            0x80..=0x3FFF => out.extend_from_slice(&[0x80 | (n >> 7) as u8, (n & 0x7F) as u8]),
            0x4000..=0x1F_FFFF => {
                out.extend_from_slice(&[0x80 | (n >> 14) as u8, 0x80 | ((n >> 7) & 0x7F) as u8, (n & 0x7F) as u8])
            }
            _ => out.extend_from_slice(&[
                0x80 | (n >> 22) as u8,
                0x80 | ((n >> 15) & 0x7F) as u8,
                0x80 | ((n >> 8) & 0x7F) as u8,
                n as u8,
            ]),
        }
    }

    #[test]
    fn u29_forms() {
        for n in [0, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1F_FFFF, 0x20_0000, 0x1FFF_FFFF] {
            let mut bytes = Vec::new();
            u29(n, &mut bytes);
            let mut b = &bytes[..];
            assert_eq!(read_u29(&mut b), Ok(n));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn reference_bomb_is_bounded() {
        // A 60000-byte string, then an array with 2^20 references to it.
        let mut bytes = vec![marker::ARRAY];
        u29(((1 << 20) << 1) | 1, &mut bytes);
        bytes.push(0x01);
        bytes.push(marker::STRING);
        u29((60_000 << 1) | 1, &mut bytes);
        bytes.extend(std::iter::repeat_n(b'x', 60_000));
        for _ in 0..(1 << 20) {
            bytes.extend_from_slice(&[marker::STRING, 0x00]);
        }
        assert_eq!(dec(&bytes), Err(Amf0Error::BudgetExceeded { limit: DEFAULT_BUDGET }));
    }

    #[test]
    fn unsupported_and_externalizable() {
        assert_eq!(dec(&[0x0C, 0x01]), Err(Amf0Error::UnsupportedAmf3Marker(0x0C)));
        assert_eq!(dec(&[0x0A, 0x07, 0x03, b'E']), Err(Amf0Error::Externalizable("E".into())));
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let bytes: Vec<u8> = std::iter::repeat_n([0x09u8, 0x03, 0x01], 10_000).flatten().collect();
        assert_eq!(dec(&bytes), Err(Amf0Error::TooDeep { limit: crate::MAX_DEPTH }));
    }
}
