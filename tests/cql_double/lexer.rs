//! The tokenizer: CQL source as tokens, and the [`Parser`] cursor over them that the type and
//! statement parsers read with.

use super::error::*;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// An unquoted identifier or keyword, lowercased (CQL folds case).
    Ident(String),
    /// A `"quoted"` identifier, case kept.
    Quoted(String),
    Str(String),
    Num(String),
    Marker,
    Sym(char),
}

pub(crate) struct Parser {
    pub(crate) toks: Vec<(usize, Tok)>,
    pub(crate) i: usize,
    pub(crate) markers: usize,
    /// The keyspace of `USE` on the connection, for unqualified table names.
    pub(crate) keyspace: Option<String>,
}

impl Parser {
    pub(crate) fn new(src: &str) -> R<Parser> {
        let cs: Vec<char> = src.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < cs.len() {
            let c = cs[i];
            let start = i;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            let tok = if c.is_ascii_alphabetic() || c == '_' {
                while i < cs.len() && (cs[i].is_ascii_alphanumeric() || cs[i] == '_') {
                    i += 1;
                }
                Tok::Ident(cs[start..i].iter().collect::<String>().to_ascii_lowercase())
            } else if c.is_ascii_digit() || (c == '-' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    i += 1;
                }
                Tok::Num(cs[start..i].iter().collect())
            } else if c == '\'' || c == '"' {
                let mut s = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return Err(syntax(format!("line 1:{start} unterminated quote"))),
                        Some(&q) if q == c && cs.get(i + 1) == Some(&c) => {
                            s.push(c);
                            i += 2;
                        }
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(&q) => {
                            s.push(q);
                            i += 1;
                        }
                    }
                }
                if c == '\'' {
                    Tok::Str(s)
                } else {
                    Tok::Quoted(s)
                }
            } else if c == '?' {
                i += 1;
                Tok::Marker
            } else if "(),.=;*<>{}:[]".contains(c) {
                i += 1;
                Tok::Sym(c)
            } else {
                return Err(syntax(format!("line 1:{start} token recognition error at: '{c}'")));
            };
            toks.push((start, tok));
        }
        Ok(Parser { toks, i: 0, markers: 0, keyspace: None })
    }

    pub(crate) fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    pub(crate) fn unexpected<T>(&self, expecting: &str) -> R<T> {
        Err(match self.toks.get(self.i) {
            Some((pos, t)) => syntax(format!(
                "line 1:{pos} mismatched input {t:?} expecting {expecting} (the CQL double knows only the sink's statement shapes)"
            )),
            None => syntax(format!("line 1:end unexpected end of statement, expecting {expecting}")),
        })
    }
    pub(crate) fn kw(&mut self, k: &str) -> bool {
        if self.peek() == Some(&Tok::Ident(k.into())) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn expect_kw(&mut self, k: &str) -> R<()> {
        if self.kw(k) {
            Ok(())
        } else {
            self.unexpected(&k.to_ascii_uppercase())
        }
    }
    pub(crate) fn sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub(crate) fn expect_sym(&mut self, c: char) -> R<()> {
        if self.sym(c) {
            Ok(())
        } else {
            self.unexpected(&format!("'{c}'"))
        }
    }
    pub(crate) fn ident(&mut self) -> R<String> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) | Some(Tok::Quoted(s)) => {
                self.i += 1;
                Ok(s)
            }
            _ => self.unexpected("an identifier"),
        }
    }
    /// `ks.table`; an unqualified name is refused as Cassandra does without `USE`.
    pub(crate) fn qualified(&mut self) -> R<(String, String)> {
        let a = self.ident()?;
        if !self.sym('.') {
            return match &self.keyspace {
                Some(ks) => Ok((ks.clone(), a)),
                None => Err(invalid(
                    "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename",
                )),
            };
        }
        Ok((a, self.ident()?))
    }
    pub(crate) fn term(&mut self) -> R<Term> {
        match self.peek().cloned() {
            Some(Tok::Marker) => {
                self.i += 1;
                self.markers += 1;
                Ok(Term::Marker(self.markers - 1))
            }
            Some(Tok::Str(s)) => {
                self.i += 1;
                Ok(Term::Str(s))
            }
            Some(Tok::Num(n)) => {
                self.i += 1;
                Ok(Term::Num(n))
            }
            Some(Tok::Ident(k)) if k == "fromjson" => {
                self.i += 1;
                self.expect_sym('(')?;
                let t = self.term()?;
                self.expect_sym(')')?;
                Ok(Term::FromJson(Box::new(t)))
            }
            Some(Tok::Ident(k)) if k == "true" || k == "false" => {
                self.i += 1;
                Ok(Term::Bool(k == "true"))
            }
            Some(Tok::Ident(k)) if k == "null" => {
                self.i += 1;
                Ok(Term::Null)
            }
            _ => self.unexpected("a bind marker or a literal"),
        }
    }
    pub(crate) fn end(&mut self) -> R<()> {
        self.sym(';');
        if self.peek().is_some() {
            return self.unexpected("the end of the statement");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Term {
    Marker(usize),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    FromJson(Box<Term>),
}
