//! Command and data messages (RTMP spec 1.0 section 7.1.1 and 7.2): AMF-encoded name,
//! transaction id, command object and arguments.
//!
//! Limits: command and shared-object messages larger than [`MAX_COMMAND_SIZE`] and data
//! messages larger than [`MAX_DATA_SIZE`] are refused by the chunk decoder before they are
//! buffered whole ([`size_limit`]); decoding one message may produce at most
//! [`COMMAND_BUDGET`] (commands) or [`DATA_BUDGET`] (data) bytes of values, AMF3 reference
//! copies included ([`amf0::Budget`]).

use amf0::{Budget, Value};
use bytes::Bytes;

use crate::message::type_id;

/// Largest command (types 20, 17) or shared-object message (19, 16) accepted, in bytes. Real
/// commands are a few hundred bytes (`connect` with every optional field is under 1 KiB).
pub const MAX_COMMAND_SIZE: u32 = 64 << 10;
/// Largest data message (types 18, 15: `@setDataFrame`/`onMetaData`, `onCuePoint`, ...)
/// accepted, in bytes. Metadata may carry keyframe tables, so this is larger than for commands.
pub const MAX_DATA_SIZE: u32 = 1 << 20;
/// Bytes of decoded values one command message may produce.
pub const COMMAND_BUDGET: usize = 1 << 20;
/// Bytes of decoded values one data message may produce: room for [`MAX_DATA_SIZE`] bytes of
/// numbers (9 wire bytes each become a 48-byte value on 64-bit targets).
pub const DATA_BUDGET: usize = 8 << 20;

/// The size limit of a message type that carries AMF, `None` for the others (media, which only
/// `max_message` limits, and protocol control).
pub fn size_limit(type_id: u8) -> Option<u32> {
    match type_id {
        type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => Some(MAX_COMMAND_SIZE),
        type_id::SHARED_OBJECT_AMF0 | type_id::SHARED_OBJECT_AMF3 => Some(MAX_COMMAND_SIZE),
        type_id::DATA_AMF0 | type_id::DATA_AMF3 => Some(MAX_DATA_SIZE),
        _ => None,
    }
}

/// The decode budget of one message of this type: [`DATA_BUDGET`] for data messages,
/// [`COMMAND_BUDGET`] for everything else.
fn budget_for(type_id: u8) -> Budget {
    match type_id {
        type_id::DATA_AMF0 | type_id::DATA_AMF3 => Budget::new(DATA_BUDGET),
        _ => Budget::new(COMMAND_BUDGET),
    }
}

/// A decoded command message.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Command name, such as `connect` or `publish`.
    pub name: String,
    /// Transaction id the reply must carry.
    pub transaction_id: f64,
    /// The command object (often Null).
    pub object: Value,
    /// The remaining arguments.
    pub args: Vec<Value>,
}

/// Why a command or data message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The AMF body is malformed.
    #[error("malformed AMF in {what}: {source}")]
    Amf {
        /// Which message.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: amf0::Amf0Error,
    },
    /// The first value is not a command name.
    #[error("command message does not start with a name")]
    NoName,
}

impl Command {
    /// Decode an AMF0 (type 20) or AMF3 (type 17) command message body, within
    /// [`COMMAND_BUDGET`].
    pub fn parse(type_id: u8, body: &[u8]) -> Result<Self, CommandError> {
        let values = decode_values(type_id, body, "command")?;
        let mut it = values.into_iter();
        let name = match it.next() {
            Some(Value::String(s)) => s,
            _ => return Err(CommandError::NoName),
        };
        let transaction_id = it.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let object = it.next().unwrap_or(Value::Null);
        Ok(Self { name, transaction_id, object, args: it.collect() })
    }

    /// The `n`th argument after the command object.
    pub fn arg(&self, n: usize) -> Option<&Value> {
        self.args.get(n)
    }

    /// Encode as an AMF0 command body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        amf0::encode(&Value::String(self.name.clone()), &mut out);
        amf0::encode(&Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.object, &mut out);
        for a in &self.args {
            amf0::encode(a, &mut out);
        }
        out
    }
}

/// Decode the AMF values of a command or data message, all of them within the one budget of
/// its type ([`COMMAND_BUDGET`] or [`DATA_BUDGET`]). AMF3 messages (types 15 and 17) start with
/// one format byte and then carry AMF0 values that may switch to AMF3 per value.
pub fn decode_values(type_id: u8, body: &[u8], what: &'static str) -> Result<Vec<Value>, CommandError> {
    let amf = match type_id {
        type_id::COMMAND_AMF3 | type_id::DATA_AMF3 if body.first() == Some(&0) => &body[1..],
        _ => body,
    };
    amf0::decode_all_with_budget(amf, &mut budget_for(type_id)).map_err(|source| CommandError::Amf { what, source })
}

/// Encode AMF0 values back to back.
pub fn encode_values(values: &[Value]) -> Bytes {
    let mut out = Vec::with_capacity(256);
    for v in values {
        amf0::encode(v, &mut out);
    }
    out.into()
}

/// Build an `onStatus` info object.
pub fn status_object(level: &str, code: &str, description: &str) -> Value {
    Value::Object(vec![
        ("level".into(), Value::String(level.into())),
        ("code".into(), Value::String(code.into())),
        ("description".into(), Value::String(description.into())),
    ])
}

/// Split `name?args` into the stream name and its query string, as nginx-rtmp does.
pub fn split_stream_name(full: &str) -> (String, String) {
    match full.split_once('?') {
        Some((name, args)) => (name.to_string(), args.to_string()),
        None => (full.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip() {
        let cmd = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            object: Value::Null,
            args: vec![Value::String("stream?key=abc".into()), Value::String("live".into())],
        };
        let parsed = Command::parse(type_id::COMMAND_AMF0, &cmd.encode()).unwrap();
        assert_eq!(parsed, cmd);
        let mut amf3 = vec![0u8];
        amf3.extend(cmd.encode());
        assert_eq!(Command::parse(type_id::COMMAND_AMF3, &amf3).unwrap(), cmd);
    }

    #[test]
    fn malformed_command_is_an_error() {
        assert!(Command::parse(type_id::COMMAND_AMF0, &[0x02, 0x00, 0x10, b'a']).is_err());
        assert!(matches!(Command::parse(type_id::COMMAND_AMF0, &[0x05]), Err(CommandError::NoName)));
    }

    #[test]
    fn stream_name_query_is_split() {
        assert_eq!(split_stream_name("stream?key=abc&x=1"), ("stream".into(), "key=abc&x=1".into()));
        assert_eq!(split_stream_name("plain"), ("plain".into(), String::new()));
    }
}
