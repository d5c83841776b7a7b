//! The double's errors: the protocol's ERROR codes it answers with, and the constructors the
//! parser and the executor use.

#[derive(Debug, Clone, PartialEq)]
pub struct CqlError {
    pub code: i32,
    pub message: String,
    /// Extra body after the message (e.g. the id of an UNPREPARED error).
    pub(crate) extra: Vec<u8>,
}

pub const PROTOCOL: i32 = 0x000A;
pub const BAD_CREDENTIALS: i32 = 0x0100;
pub const SYNTAX: i32 = 0x2000;
pub const INVALID: i32 = 0x2200;
pub const ALREADY_EXISTS: i32 = 0x2400;
pub const UNPREPARED: i32 = 0x2500;

pub(crate) fn err(code: i32, message: impl Into<String>) -> CqlError {
    CqlError { code, message: message.into(), extra: Vec::new() }
}
pub(crate) fn invalid(message: impl Into<String>) -> CqlError {
    err(INVALID, message)
}
pub(crate) fn syntax(message: impl Into<String>) -> CqlError {
    err(SYNTAX, message)
}

pub(crate) type R<T> = Result<T, CqlError>;
