/// One AMF value, as decoded from AMF0 (or AMF3) and encoded to AMF0.
///
/// Objects keep their properties in wire order, as `(key, value)` pairs.
///
/// Mapping decisions:
/// - AMF0 long strings (0x0C) decode to [`Value::String`]; [`crate::encode`] picks the long
///   form by itself for strings longer than 65535 bytes.
/// - AMF0 `unsupported` (0x0D) decodes to [`Value::Undefined`].
/// - AMF3 integers decode to [`Value::Number`], AMF3 arrays with only a dense part to
///   [`Value::StrictArray`] and those with associative keys to [`Value::EcmaArray`]
///   (dense entries keyed "0", "1", ...), AMF3 XML to [`Value::XmlDocument`], AMF3 dates to
///   [`Value::Date`] with `tz: 0`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Defined by: AMF 0 spec, 2.2.
    Number(f64),
    /// Defined by: AMF 0 spec, 2.3.
    Boolean(bool),
    /// Defined by: AMF 0 spec, 2.4 (and long strings, 2.14).
    String(String),
    /// Anonymous object. Defined by: AMF 0 spec, 2.5.
    Object(Vec<(String, Value)>),
    /// Defined by: AMF 0 spec, 2.7.
    Null,
    /// Defined by: AMF 0 spec, 2.8.
    Undefined,
    /// Associative array, used by `onMetaData`. Defined by: AMF 0 spec, 2.10.
    EcmaArray(Vec<(String, Value)>),
    /// Dense array. Defined by: AMF 0 spec, 2.12.
    StrictArray(Vec<Value>),
    /// Defined by: AMF 0 spec, 2.13.
    Date {
        /// Milliseconds since the Unix epoch, UTC.
        millis: f64,
        /// Time zone offset; the spec says it should be 0.
        tz: i16,
    },
    /// Defined by: AMF 0 spec, 2.17.
    XmlDocument(String),
    /// Object with a registered class name. Defined by: AMF 0 spec, 2.18.
    TypedObject {
        /// The class alias.
        class_name: String,
        /// Properties in wire order.
        properties: Vec<(String, Value)>,
    },
}

impl Value {
    /// Builds a [`Value::Object`] from key/value pairs, keeping their order.
    ///
    /// ```
    /// let v = amf0::Value::object([("app", "live".into()), ("tcUrl", "rtmp://h/live".into())]);
    /// assert_eq!(v.get("app").and_then(|v| v.as_str()), Some("live"));
    /// ```
    pub fn object<K, I>(pairs: I) -> Value
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, Value)>,
    {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds a [`Value::EcmaArray`] from key/value pairs, keeping their order.
    pub fn ecma_array<K, I>(pairs: I) -> Value
    where
        K: Into<String>,
        I: IntoIterator<Item = (K, Value)>,
    {
        Value::EcmaArray(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The string inside a [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number inside a [`Value::Number`].
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The flag inside a [`Value::Boolean`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an [`Value::Object`], [`Value::EcmaArray`] or [`Value::TypedObject`].
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `key` of an object-like value (see [`Value::properties`]).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True for [`Value::Null`] and [`Value::Undefined`].
    pub fn is_null_or_undefined(&self) -> bool {
        matches!(self, Value::Null | Value::Undefined)
    }

    /// A short name of the variant, for error messages and logs.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Number(_) => "number",
            Value::Boolean(_) => "boolean",
            Value::String(_) => "string",
            Value::Object(_) => "object",
            Value::Null => "null",
            Value::Undefined => "undefined",
            Value::EcmaArray(_) => "ecma-array",
            Value::StrictArray(_) => "strict-array",
            Value::Date { .. } => "date",
            Value::XmlDocument(_) => "xml-document",
            Value::TypedObject { .. } => "typed-object",
        }
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::Number(n.into())
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Number(n.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::StrictArray(v)
    }
}
