//! ClickHouse column types as `system.columns` spells them (`Nullable(Decimal(18, 4))`,
//! `DateTime('Europe/Berlin')`, `Enum8('a' = 1)`…), read into the [`ChType`]s the encoder writes.

use std::fmt;

/// A ClickHouse column type the encoder can write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChType {
    /// `UInt8`.
    UInt8,
    /// `UInt16`.
    UInt16,
    /// `UInt32`.
    UInt32,
    /// `UInt64`.
    UInt64,
    /// `Int8`.
    Int8,
    /// `Int16`.
    Int16,
    /// `Int32`.
    Int32,
    /// `Int64`.
    Int64,
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `Bool` (one byte, 0 or 1).
    Bool,
    /// `String`.
    String,
    /// `FixedString(N)`.
    FixedString(usize),
    /// `Date`: days since 1970-01-01 as a `UInt16`.
    Date,
    /// `DateTime` / `DateTime('tz')`: Unix seconds as a `UInt32`. `utc` is true when the column's
    /// time zone (its own, or the server's) is UTC, so text without an offset can be converted.
    DateTime {
        /// The column's own time zone, if the type names one.
        tz: Option<String>,
        /// Whether text without an offset may be read as UTC.
        utc: bool,
    },
    /// `Decimal(P, S)`: a 4, 8 or 16 byte integer scaled by `10^S`.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// `UUID`: two little-endian `UInt64` halves, high half first.
    Uuid,
    /// `Enum8('a' = 1, …)`.
    Enum8(Vec<(String, i8)>),
    /// `Enum16('a' = 1, …)`.
    Enum16(Vec<(String, i16)>),
    /// `Nullable(T)`: a 1 (NULL) or 0 byte, then `T` if not NULL.
    Nullable(Box<ChType>),
    /// `LowCardinality(T)`: the same bytes as `T`.
    LowCardinality(Box<ChType>),
    /// `Array(T)`: a LEB128 length, then the elements.
    Array(Box<ChType>),
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "Etc/UTC" | "GMT" | "Etc/GMT" | "UCT" | "Etc/UCT" | "Universal" | "Etc/Universal" | "Zulu")
}

/// Splits `s` at top-level commas (outside quotes and parentheses).
fn split_args(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut quoted, mut escaped, mut start) = (Vec::new(), 0i32, false, false, 0);
    for (i, ch) in s.char_indices() {
        if quoted {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => quoted = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '\'' => quoted = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

/// Reads a quoted SQL string literal (`'a\'b'`) at the start of `s`; returns it and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('\'')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '\'' => return Some((out, &s[i + 2..])),
            _ => out.push(c),
        }
    }
    None
}

fn enum_members<T: std::str::FromStr>(args: &str) -> Option<Vec<(String, T)>> {
    split_args(args)
        .into_iter()
        .map(|m| {
            let (name, rest) = quoted(m)?;
            let n = rest.trim().strip_prefix('=')?.trim().parse().ok()?;
            Some((name, n))
        })
        .collect()
}

impl ChType {
    /// Parses a type as `system.columns` spells it. `server_tz` is the server's time zone
    /// (`SELECT timezone()`), which `DateTime` columns without their own use. Unsupported types
    /// are an error carrying the (innermost) type that is not supported.
    ///
    /// ```
    /// use differential_sinks::connectors::clickhouse::rowbinary::ChType;
    /// assert_eq!(
    ///     ChType::parse("Nullable(Decimal(18, 4))", "UTC").unwrap(),
    ///     ChType::Nullable(Box::new(ChType::Decimal { precision: 18, scale: 4 }))
    /// );
    /// assert!(ChType::parse("Tuple(UInt8, String)", "UTC").is_err());
    /// ```
    pub fn parse(ty: &str, server_tz: &str) -> Result<ChType, String> {
        let ty = ty.trim();
        let (name, args) = match ty.find('(') {
            Some(i) if ty.ends_with(')') => (&ty[..i], Some(&ty[i + 1..ty.len() - 1])),
            _ => (ty, None),
        };
        let unsupported = || Err(ty.to_string());
        let scale = |a: &str| a.trim().parse::<u32>().map_err(|_| ty.to_string());
        Ok(match (name, args) {
            ("UInt8", None) => ChType::UInt8,
            ("UInt16", None) => ChType::UInt16,
            ("UInt32", None) => ChType::UInt32,
            ("UInt64", None) => ChType::UInt64,
            ("Int8", None) => ChType::Int8,
            ("Int16", None) => ChType::Int16,
            ("Int32", None) => ChType::Int32,
            ("Int64", None) => ChType::Int64,
            ("Float32", None) => ChType::Float32,
            ("Float64", None) => ChType::Float64,
            ("Bool", None) => ChType::Bool,
            ("String", None) => ChType::String,
            ("FixedString", Some(n)) => ChType::FixedString(n.trim().parse().map_err(|_| ty.to_string())?),
            ("Date", None) => ChType::Date,
            ("DateTime", None) => ChType::DateTime { tz: None, utc: is_utc(server_tz) },
            ("DateTime", Some(a)) => {
                let (tz, rest) = quoted(a.trim()).ok_or_else(|| ty.to_string())?;
                if !rest.trim().is_empty() {
                    return unsupported();
                }
                ChType::DateTime { utc: is_utc(&tz), tz: Some(tz) }
            }
            ("Decimal", Some(a)) => match split_args(a)[..] {
                [p, s] => {
                    let (precision, scale) = (scale(p)?, scale(s)?);
                    if precision == 0 || precision > 38 || scale > precision {
                        return unsupported();
                    }
                    ChType::Decimal { precision, scale }
                }
                _ => return unsupported(),
            },
            ("Decimal32", Some(s)) => ChType::Decimal { precision: 9, scale: scale(s)? },
            ("Decimal64", Some(s)) => ChType::Decimal { precision: 18, scale: scale(s)? },
            ("Decimal128", Some(s)) => ChType::Decimal { precision: 38, scale: scale(s)? },
            ("UUID", None) => ChType::Uuid,
            ("Enum8", Some(a)) => ChType::Enum8(enum_members(a).ok_or_else(|| ty.to_string())?),
            ("Enum16", Some(a)) => ChType::Enum16(enum_members(a).ok_or_else(|| ty.to_string())?),
            ("Nullable", Some(a)) => ChType::Nullable(Box::new(ChType::parse(a, server_tz)?)),
            ("LowCardinality", Some(a)) => ChType::LowCardinality(Box::new(ChType::parse(a, server_tz)?)),
            ("Array", Some(a)) => ChType::Array(Box::new(ChType::parse(a, server_tz)?)),
            _ => return unsupported(),
        })
    }

    /// The type without `LowCardinality` wrappers (which do not change the bytes).
    pub(super) fn plain(&self) -> &ChType {
        match self {
            ChType::LowCardinality(t) => t.plain(),
            t => t,
        }
    }
}

impl fmt::Display for ChType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members = |f: &mut fmt::Formatter<'_>, kind: &str, m: &mut dyn Iterator<Item = (&String, i64)>| {
            write!(f, "{kind}(")?;
            for (i, (name, n)) in m.enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}'{}' = {n}", name.replace('\\', "\\\\").replace('\'', "\\'"))?;
            }
            write!(f, ")")
        };
        match self {
            ChType::UInt8 => write!(f, "UInt8"),
            ChType::UInt16 => write!(f, "UInt16"),
            ChType::UInt32 => write!(f, "UInt32"),
            ChType::UInt64 => write!(f, "UInt64"),
            ChType::Int8 => write!(f, "Int8"),
            ChType::Int16 => write!(f, "Int16"),
            ChType::Int32 => write!(f, "Int32"),
            ChType::Int64 => write!(f, "Int64"),
            ChType::Float32 => write!(f, "Float32"),
            ChType::Float64 => write!(f, "Float64"),
            ChType::Bool => write!(f, "Bool"),
            ChType::String => write!(f, "String"),
            ChType::FixedString(n) => write!(f, "FixedString({n})"),
            ChType::Date => write!(f, "Date"),
            ChType::DateTime { tz: None, .. } => write!(f, "DateTime"),
            ChType::DateTime { tz: Some(tz), .. } => write!(f, "DateTime('{tz}')"),
            ChType::Decimal { precision, scale } => write!(f, "Decimal({precision}, {scale})"),
            ChType::Uuid => write!(f, "UUID"),
            ChType::Enum8(m) => members(f, "Enum8", &mut m.iter().map(|(s, n)| (s, i64::from(*n)))),
            ChType::Enum16(m) => members(f, "Enum16", &mut m.iter().map(|(s, n)| (s, i64::from(*n)))),
            ChType::Nullable(t) => write!(f, "Nullable({t})"),
            ChType::LowCardinality(t) => write!(f, "LowCardinality({t})"),
            ChType::Array(t) => write!(f, "Array({t})"),
        }
    }
}
