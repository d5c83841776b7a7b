//! One value of a row's field as the scalar it serializes to: a serde serializer that reduces any
//! `Serialize` value to a [`Scalar`] — null, a boolean, a [`Num`], text or bytes — and hands it
//! to a function, for encoders that convert each field to a column's type themselves (the Arrow
//! columns of the lakehouse tables).
//!
//! `Option` and newtype wrappers are looked through, `None` and `()` are null, a unit enum
//! variant is its name (as in the row's JSON), a `char` is text. A sequence, map, struct or any
//! other compound value is refused with an error naming what it was, since a scalar column cannot
//! hold it.
//!
//! ```
//! use differential_sinks::encode::scalar::{with_scalar, Num, Scalar};
//! let mut seen = None;
//! with_scalar(&Some(7u8), |s| {
//!     seen = Some(matches!(s, Scalar::Num(Num::U(7))));
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(seen, Some(true));
//! let err = with_scalar(&vec![1], |_| Ok(())).unwrap_err();
//! assert_eq!(err, "a sequence cannot be written to a column of scalars");
//! ```

use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// A number as the serializer received it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// A signed integer.
    I(i64),
    /// An unsigned integer.
    U(u64),
    /// A 128-bit integer (`u128`s that fit are read as these).
    I128(i128),
    /// A 64-bit float.
    F(f64),
    /// A 32-bit float.
    F32(f32),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::I(v) => write!(f, "{v}"),
            Num::U(v) => write!(f, "{v}"),
            Num::I128(v) => write!(f, "{v}"),
            Num::F(v) => write!(f, "{v:?}"),
            Num::F32(v) => write!(f, "{v:?}"),
        }
    }
}

impl Num {
    /// The exact integer value, if the number is one (a float only when it has no fraction).
    pub fn integer(self) -> Option<i128> {
        match self {
            Num::I(v) => Some(i128::from(v)),
            Num::U(v) => Some(i128::from(v)),
            Num::I128(v) => Some(v),
            Num::F(v) => (v.fract() == 0.0 && v.abs() < 1.7e38).then_some(v as i128),
            Num::F32(v) => (v.fract() == 0.0 && v.abs() < 1.7e38).then_some(v as i128),
        }
    }

    /// The value as a 64-bit float (rounded if it has more digits than one holds).
    pub fn float(self) -> f64 {
        match self {
            Num::I(v) => v as f64,
            Num::U(v) => v as f64,
            Num::I128(v) => v as f64,
            Num::F(v) => v,
            Num::F32(v) => f64::from(v),
        }
    }
}

/// A field's value as a scalar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar<'a> {
    /// `None` or `()`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(Num),
    /// Text (a string, a `char`, a unit enum variant's name).
    Str(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// Serializes `value` and hands the scalar it is to `f`; `f`'s error, or why the value is not a
/// scalar, comes back as the error.
#[inline]
pub fn with_scalar<T, F>(value: &T, f: F) -> Result<(), String>
where
    T: Serialize + ?Sized,
    F: FnOnce(Scalar<'_>) -> Result<(), String>,
{
    value.serialize(ScalarSer(f)).map_err(|e| e.0)
}

/// A serializer's error that is its reason as text (the scalar serializer's, and the visitors'
/// of the encoders built on it).
#[derive(Debug)]
pub(crate) struct TextError(pub(crate) String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

impl ser::Error for TextError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        TextError(msg.to_string())
    }
}

struct ScalarSer<F>(F);

impl<F: FnOnce(Scalar<'_>) -> Result<(), String>> ScalarSer<F> {
    #[inline]
    fn give(self, s: Scalar<'_>) -> Result<(), TextError> {
        (self.0)(s).map_err(TextError)
    }
}

fn refuse(what: &str) -> TextError {
    TextError(format!("{what} cannot be written to a column of scalars"))
}

impl<F: FnOnce(Scalar<'_>) -> Result<(), String>> ser::Serializer for ScalarSer<F> {
    type Ok = ();
    type Error = TextError;
    type SerializeSeq = Impossible<(), TextError>;
    type SerializeTuple = Impossible<(), TextError>;
    type SerializeTupleStruct = Impossible<(), TextError>;
    type SerializeTupleVariant = Impossible<(), TextError>;
    type SerializeMap = Impossible<(), TextError>;
    type SerializeStruct = Impossible<(), TextError>;
    type SerializeStructVariant = Impossible<(), TextError>;

    fn serialize_bool(self, v: bool) -> Result<(), TextError> {
        self.give(Scalar::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::I(v.into())))
    }
    fn serialize_i16(self, v: i16) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::I(v.into())))
    }
    fn serialize_i32(self, v: i32) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::I(v.into())))
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::I(v)))
    }
    fn serialize_i128(self, v: i128) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::I128(v)))
    }
    fn serialize_u8(self, v: u8) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::U(v.into())))
    }
    fn serialize_u16(self, v: u16) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::U(v.into())))
    }
    fn serialize_u32(self, v: u32) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::U(v.into())))
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::U(v)))
    }
    fn serialize_u128(self, v: u128) -> Result<(), TextError> {
        match i128::try_from(v) {
            Ok(v) => self.give(Scalar::Num(Num::I128(v))),
            Err(_) => Err(TextError(format!("{v} is out of range"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::F32(v)))
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), TextError> {
        self.give(Scalar::Num(Num::F(v)))
    }
    fn serialize_char(self, v: char) -> Result<(), TextError> {
        self.give(Scalar::Str(v.encode_utf8(&mut [0; 4])))
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), TextError> {
        self.give(Scalar::Str(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), TextError> {
        self.give(Scalar::Bytes(v))
    }
    fn serialize_none(self) -> Result<(), TextError> {
        self.give(Scalar::Null)
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), TextError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), TextError> {
        self.give(Scalar::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), TextError> {
        self.give(Scalar::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), TextError> {
        self.give(Scalar::Str(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), TextError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), TextError> {
        Err(refuse("an enum variant with a value"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, TextError> {
        Err(refuse("a sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, TextError> {
        Err(refuse("a tuple"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, TextError> {
        Err(refuse("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, TextError> {
        Err(refuse("an enum variant with values"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, TextError> {
        Err(refuse("a map"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, TextError> {
        Err(refuse("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, TextError> {
        Err(refuse("an enum variant with fields"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_of<T: Serialize>(v: &T) -> Result<String, String> {
        let mut out = String::new();
        with_scalar(v, |s| {
            out = format!("{s:?}");
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn wrappers_are_looked_through_and_compounds_refused() {
        assert_eq!(scalar_of(&Some(Some(3i32))).unwrap(), "Num(I(3))");
        assert_eq!(scalar_of(&None::<i32>).unwrap(), "Null");
        assert_eq!(scalar_of(&'x').unwrap(), "Str(\"x\")");
        assert_eq!(scalar_of(&u128::MAX).unwrap_err(), format!("{} is out of range", u128::MAX));
        assert_eq!(scalar_of(&(1, 2)).unwrap_err(), "a tuple cannot be written to a column of scalars");
        let map: std::collections::BTreeMap<String, i32> = Default::default();
        assert_eq!(scalar_of(&map).unwrap_err(), "a map cannot be written to a column of scalars");
    }

    #[test]
    fn the_functions_error_comes_back() {
        assert_eq!(with_scalar(&1, |_| Err("no".into())).unwrap_err(), "no");
    }

    #[test]
    fn integers_of_floats_only_without_a_fraction() {
        assert_eq!(Num::F(3.0).integer(), Some(3));
        assert_eq!(Num::F(3.5).integer(), None);
        assert_eq!(Num::U(u64::MAX).integer(), Some(i128::from(u64::MAX)));
    }
}
