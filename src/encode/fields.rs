//! One serde serializer for "a row's named fields": it accepts a row that serializes as a struct
//! or a map (through `Option`/newtype wrappers) and hands each `(field name, value)` to a
//! [`FieldVisitor`], which encodes the value however its target needs (key columns, JDBC cells,
//! RowBinary columns).
//!
//! The visitor's `field` is generic over the value, so each use is monomorphized: a struct row's
//! field names are its `&'static str`s, passed through without allocating; a map row's keys are
//! read into a `String` each (as every copy before this one did). Any other shape — a number, a
//! sequence, an enum variant… — is refused with the [`Shape`] it had, for the visitor to word.

use serde::ser::{self, Impossible, Serialize};

/// What a row serialized as when it was not a struct or map (or a map key that is not a string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `bool`
    Bool,
    /// any integer or float
    Number,
    /// `char`
    Char,
    /// a string
    Str,
    /// bytes
    Bytes,
    /// `None`
    None,
    /// `()`
    Unit,
    /// a unit struct
    UnitStruct,
    /// a unit enum variant
    UnitVariant,
    /// a newtype, tuple or struct enum variant
    Variant,
    /// a sequence
    Seq,
    /// a tuple
    Tuple,
    /// a tuple struct
    TupleStruct,
    /// a map key that is not a string
    NonStringKey,
}

impl Shape {
    /// The shape in words: "a boolean", "a number", "a map with non-string keys"…
    pub fn describe(self) -> &'static str {
        match self {
            Shape::Bool => "a boolean",
            Shape::Number => "a number",
            Shape::Char => "a character",
            Shape::Str => "a string",
            Shape::Bytes => "bytes",
            Shape::None => "null",
            Shape::Unit => "unit",
            Shape::UnitStruct => "a unit struct",
            Shape::UnitVariant | Shape::Variant => "an enum variant",
            Shape::Seq => "a sequence",
            Shape::Tuple => "a tuple",
            Shape::TupleStruct => "a tuple struct",
            Shape::NonStringKey => "a map with non-string keys",
        }
    }
}

/// Receives a row's fields in the order the row serializes them.
pub trait FieldVisitor {
    /// The error of the visit (also what a value's own `Serialize` may fail with).
    type Error: ser::Error;

    /// One field.
    fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), Self::Error>;

    /// The error for a row (or map key) of shape `shape`.
    fn not_a_row(&self, shape: Shape) -> Self::Error;

    /// Called after the last field of the row.
    fn end(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Hands each field of `row` to `visitor`.
#[inline]
pub fn visit_fields<R: Serialize + ?Sized, V: FieldVisitor>(row: &R, visitor: &mut V) -> Result<(), V::Error> {
    row.serialize(Fields { visitor, key: None })
}

/// The serializer of a row and, once it opened as a struct or map, of its fields.
struct Fields<'a, V> {
    visitor: &'a mut V,
    key: Option<String>,
}

macro_rules! refuse {
    ($($f:ident($($t:ty),*) => $shape:ident;)*) => {$(
        fn $f(self, $(_: $t),*) -> Result<Self::Ok, Self::Error> { Err(self.visitor.not_a_row(Shape::$shape)) }
    )*};
}

impl<'a, V: FieldVisitor> ser::Serializer for Fields<'a, V> {
    type Ok = ();
    type Error = V::Error;
    type SerializeSeq = Impossible<(), V::Error>;
    type SerializeTuple = Impossible<(), V::Error>;
    type SerializeTupleStruct = Impossible<(), V::Error>;
    type SerializeTupleVariant = Impossible<(), V::Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), V::Error>;

    refuse! {
        serialize_bool(bool) => Bool;
        serialize_i8(i8) => Number; serialize_i16(i16) => Number; serialize_i32(i32) => Number;
        serialize_i64(i64) => Number; serialize_i128(i128) => Number; serialize_u8(u8) => Number;
        serialize_u16(u16) => Number; serialize_u32(u32) => Number; serialize_u64(u64) => Number;
        serialize_u128(u128) => Number; serialize_f32(f32) => Number; serialize_f64(f64) => Number;
        serialize_char(char) => Char; serialize_str(&str) => Str; serialize_bytes(&[u8]) => Bytes;
        serialize_none() => None; serialize_unit() => Unit; serialize_unit_struct(&'static str) => UnitStruct;
        serialize_unit_variant(&'static str, u32, &'static str) => UnitVariant;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), V::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), V::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), V::Error> {
        Err(self.visitor.not_a_row(Shape::Variant))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, V::Error> {
        Err(self.visitor.not_a_row(Shape::Seq))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, V::Error> {
        Err(self.visitor.not_a_row(Shape::Tuple))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, V::Error> {
        Err(self.visitor.not_a_row(Shape::TupleStruct))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, V::Error> {
        Err(self.visitor.not_a_row(Shape::Variant))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, V::Error> {
        Ok(self)
    }
    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, V::Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, V::Error> {
        Err(self.visitor.not_a_row(Shape::Variant))
    }
}

impl<V: FieldVisitor> ser::SerializeStruct for Fields<'_, V> {
    type Ok = ();
    type Error = V::Error;
    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<(), V::Error> {
        self.visitor.field(name, value)
    }
    fn end(self) -> Result<(), V::Error> {
        self.visitor.end()
    }
}

impl<V: FieldVisitor> ser::SerializeMap for Fields<'_, V> {
    type Ok = ();
    type Error = V::Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), V::Error> {
        match key.serialize(KeyName) {
            Ok(name) => {
                self.key = Some(name);
                Ok(())
            }
            Err(NotAName) => Err(self.visitor.not_a_row(Shape::NonStringKey)),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), V::Error> {
        let name = self.key.take().ok_or_else(|| ser::Error::custom("a map value without a key"))?;
        self.visitor.field(&name, value)
    }
    fn end(self) -> Result<(), V::Error> {
        self.visitor.end()
    }
}

/// A map key that is not a string (or a char, a unit variant's name, or a newtype of those).
#[derive(Debug)]
struct NotAName;

impl std::fmt::Display for NotAName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a field name")
    }
}
impl std::error::Error for NotAName {}
impl ser::Error for NotAName {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotAName
    }
}

/// Reads a map key as a field name.
struct KeyName;

macro_rules! not_a_name {
    ($($f:ident($($t:ty),*);)*) => {$(
        fn $f(self, $(_: $t),*) -> Result<String, NotAName> { Err(NotAName) }
    )*};
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = NotAName;
    type SerializeSeq = Impossible<String, NotAName>;
    type SerializeTuple = Impossible<String, NotAName>;
    type SerializeTupleStruct = Impossible<String, NotAName>;
    type SerializeTupleVariant = Impossible<String, NotAName>;
    type SerializeMap = Impossible<String, NotAName>;
    type SerializeStruct = Impossible<String, NotAName>;
    type SerializeStructVariant = Impossible<String, NotAName>;

    fn serialize_str(self, v: &str) -> Result<String, NotAName> {
        Ok(v.to_string())
    }
    fn serialize_char(self, v: char) -> Result<String, NotAName> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<String, NotAName> {
        Ok(v.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<String, NotAName> {
        v.serialize(self)
    }
    not_a_name! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32); serialize_i64(i64);
        serialize_u8(u8); serialize_u16(u16); serialize_u32(u32); serialize_u64(u64); serialize_f32(f32);
        serialize_f64(f64); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
        serialize_unit_struct(&'static str);
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, NotAName> {
        Err(NotAName)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, NotAName> {
        Err(NotAName)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAName> {
        Err(NotAName)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAName> {
        Err(NotAName)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotAName> {
        Err(NotAName)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAName> {
        Err(NotAName)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAName> {
        Err(NotAName)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, NotAName> {
        Err(NotAName)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotAName> {
        Err(NotAName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug)]
    struct E(String);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for E {}
    impl ser::Error for E {
        fn custom<T: std::fmt::Display>(m: T) -> Self {
            E(m.to_string())
        }
    }

    /// Collects `name=json` pairs.
    #[derive(Default)]
    struct Collect(Vec<String>, bool);
    impl FieldVisitor for Collect {
        type Error = E;
        fn field<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result<(), E> {
            self.0.push(format!("{name}={}", serde_json::to_string(value).map_err(|e| E(e.to_string()))?));
            Ok(())
        }
        fn not_a_row(&self, shape: Shape) -> E {
            E(shape.describe().to_string())
        }
        fn end(&mut self) -> Result<(), E> {
            self.1 = true;
            Ok(())
        }
    }

    #[derive(serde::Serialize)]
    struct Row {
        id: u32,
        name: &'static str,
    }

    #[test]
    fn structs_maps_and_wrappers() {
        let mut c = Collect::default();
        visit_fields(&Some(Row { id: 1, name: "a" }), &mut c).unwrap();
        assert_eq!((c.0.as_slice(), c.1), (["id=1".to_string(), "name=\"a\"".to_string()].as_slice(), true));
        let mut c = Collect::default();
        visit_fields(&serde_json::json!({"b": [1], "a": null}), &mut c).unwrap();
        assert_eq!(c.0, ["a=null", "b=[1]"]);
    }

    #[test]
    fn other_shapes_are_named() {
        let err = |r: Result<(), E>| r.unwrap_err().0;
        assert_eq!(err(visit_fields(&5u8, &mut Collect::default())), "a number");
        assert_eq!(err(visit_fields(&"x", &mut Collect::default())), "a string");
        assert_eq!(err(visit_fields(&vec![1], &mut Collect::default())), "a sequence");
        assert_eq!(err(visit_fields(&None::<Row>, &mut Collect::default())), "null");
        let m: BTreeMap<u8, u8> = [(1, 2)].into();
        assert_eq!(err(visit_fields(&m, &mut Collect::default())), "a map with non-string keys");
    }
}
