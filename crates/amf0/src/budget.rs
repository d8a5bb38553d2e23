//! One allowance of decoded bytes per message, shared by every value in it.
//!
//! A few bytes of AMF can stand for a lot of memory: an AMF0 `null` (1 byte) becomes a whole
//! [`Value`], and an AMF3 reference (2 bytes) copies the object or string it points at. A
//! [`Budget`] counts the bytes the decoded values take (see [`decoded_size`]), plus the copies
//! held in AMF3 reference tables, and decoding fails with [`Amf0Error::BudgetExceeded`] before it
//! allocates past the limit. A reference that is expanded counts again each time.

use std::mem::size_of;

use crate::{Amf0Error, Value};

/// The budget of [`crate::decode`] and [`crate::decode_all`]: 16 MiB of decoded values.
/// Callers that know the kind of message (RTMP commands) pass a tighter one.
pub const DEFAULT_BUDGET: usize = 16 << 20;

/// Bytes of decoded values a decoding may still produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    limit: usize,
    used: usize,
}

impl Budget {
    /// A budget of `limit` bytes of decoded values.
    pub fn new(limit: usize) -> Self {
        Self { limit, used: 0 }
    }

    /// The limit this budget was made with.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged so far; never more than [`Budget::limit`].
    pub fn used(&self) -> usize {
        self.used
    }

    /// Bytes still available.
    pub fn remaining(&self) -> usize {
        self.limit - self.used
    }

    /// Takes `bytes` from the budget, or fails (taking nothing) when they are not left.
    pub(crate) fn charge(&mut self, bytes: usize) -> Result<(), Amf0Error> {
        if bytes > self.remaining() {
            return Err(Amf0Error::BudgetExceeded { limit: self.limit });
        }
        self.used += bytes;
        Ok(())
    }

    /// Room for a container of `count` elements of `size` bytes to reserve up front: no more
    /// than `count`, than `input_left` (every element takes at least one input byte) or than
    /// the budget can pay for. The reservation is charged now, since it is allocated now; each
    /// element is charged again as it is decoded, so [`Budget::refund`] `size` for each of the
    /// first `capacity` elements once it is in its slot.
    pub(crate) fn reserve(&mut self, count: usize, input_left: usize, size: usize) -> usize {
        let capacity = count.min(input_left).min(self.remaining() / size.max(1));
        self.used += capacity * size;
        capacity
    }

    /// Gives back the reservation of one slot whose element was charged on its own.
    pub(crate) fn refund(&mut self, bytes: usize) {
        self.used -= bytes;
    }
}

/// Charge for one decoded [`Value`] (its inline part; its heap parts are charged as read).
pub(crate) const VALUE: usize = size_of::<Value>();
/// Charge for one property key's inline part (the key's bytes are charged as read).
pub(crate) const KEY: usize = size_of::<String>();

/// The bytes `value` takes as a [`Budget`] counts them: its inline size, string bytes, and for
/// each property its key. Decoding never yields values whose sizes add up to more than the
/// [`Budget::used`] of the decoding (the allocator may round up, and vectors may hold spare
/// capacity of up to the same again).
pub fn decoded_size(value: &Value) -> usize {
    VALUE
        + match value {
            Value::String(s) | Value::XmlDocument(s) => s.len(),
            Value::Object(p) | Value::EcmaArray(p) => properties_size(p),
            Value::TypedObject { class_name, properties } => class_name.len() + properties_size(properties),
            Value::StrictArray(items) => items.iter().map(decoded_size).sum(),
            Value::Number(_) | Value::Boolean(_) | Value::Null | Value::Undefined | Value::Date { .. } => 0,
        }
}

fn properties_size(props: &[(String, Value)]) -> usize {
    props.iter().map(|(k, v)| KEY + k.len() + decoded_size(v)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_takes_nothing_when_refused() {
        let mut b = Budget::new(100);
        assert_eq!(b.charge(60), Ok(()));
        assert_eq!(b.charge(41), Err(Amf0Error::BudgetExceeded { limit: 100 }));
        assert_eq!((b.used(), b.remaining()), (60, 40));
        assert_eq!(b.reserve(3, 1000, 8), 3);
        assert_eq!(b.reserve(1000, 2, 8), 2);
        assert_eq!(b.reserve(1000, 1000, 8), 0);
        b.refund(40);
        assert_eq!(b.reserve(1000, 1000, 8), 5);
    }

    #[test]
    fn sizes_count_keys_and_strings() {
        assert_eq!(decoded_size(&Value::Null), VALUE);
        assert_eq!(decoded_size(&"abc".into()), VALUE + 3);
        let obj = Value::object([("ab", Value::Null)]);
        assert_eq!(decoded_size(&obj), VALUE + KEY + 2 + VALUE);
        assert_eq!(decoded_size(&Value::StrictArray(vec![Value::Null; 4])), 5 * VALUE);
    }
}
