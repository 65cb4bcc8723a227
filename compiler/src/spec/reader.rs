//! Walking a spanned TOML table while collecting diagnostics.
//!
//! Every key a pass reads is recorded; [`Table::finish`] then reports each key
//! that nobody read as unknown, with "did you mean" among the keys that were
//! read. So a misspelt key is never silently ignored, and no list of allowed
//! keys is written twice.

use std::cell::RefCell;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Literal, Sp};
use crate::diag::{Diagnostic, Diags, did_you_mean};

/// A table being read. `what` names it in messages ("source `orders`").
pub struct Table<'a, 'i> {
    pub table: &'a DeTable<'i>,
    /// Where to point when a required key is missing (the table's header or key).
    pub span: Range<usize>,
    pub what: String,
    asked: RefCell<Vec<&'static str>>,
}

pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn mismatch(what: &str, key: &str, expected: &str, v: &Spanned<DeValue<'_>>) -> Diagnostic {
    Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{what}: `{key}` must be {expected}"))
        .label(format!("this is {}", type_name(v.get_ref())))
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Range<usize>, what: impl Into<String>) -> Self {
        Table { table, span, what: what.into(), asked: RefCell::new(Vec::new()) }
    }

    /// The value of `key`, recording that `key` is known.
    pub fn get(&self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.asked.borrow_mut().push(key);
        self.table.get(key)
    }

    /// The span of `key` itself, if present.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.keys().find(|k| k.get_ref() == key).map(|k| k.span())
    }

    fn missing(&self, key: &str, d: &mut Diags, help: Option<&str>) {
        let mut diag = Diagnostic::error("kiln::missing-key", self.span.clone(), format!("{}: missing `{key}`", self.what))
            .label(format!("`{key}` is required here"));
        if let Some(h) = help {
            diag = diag.help(h.to_string());
        }
        d.push(diag);
    }

    pub fn str(&self, key: &'static str, d: &mut Diags) -> Option<Sp<String>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(s.to_string(), v.span())),
            _ => {
                d.push(mismatch(&self.what, key, "a string", v));
                None
            }
        }
    }

    pub fn req_str(&self, key: &'static str, d: &mut Diags, help: Option<&str>) -> Option<Sp<String>> {
        if !self.table.contains_key(key) {
            self.asked.borrow_mut().push(key);
            self.missing(key, d, help);
            return None;
        }
        self.str(key, d)
    }

    pub fn bool(&self, key: &'static str, d: &mut Diags) -> Option<Sp<bool>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Sp::new(*b, v.span())),
            _ => {
                d.push(mismatch(&self.what, key, "true or false", v));
                None
            }
        }
    }

    pub fn int(&self, key: &'static str, d: &mut Diags) -> Option<Sp<i64>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(Sp::new(n, v.span())),
                Err(_) => {
                    d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{}: `{key}` is out of range", self.what)));
                    None
                }
            },
            _ => {
                d.push(mismatch(&self.what, key, "an integer", v));
                None
            }
        }
    }

    /// A list of integers.
    pub fn int_list(&self, key: &'static str, d: &mut Diags) -> Option<Sp<Vec<Sp<i64>>>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            d.push(mismatch(&self.what, key, "a list of integers", v));
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item.get_ref() {
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => out.push(Sp::new(n, item.span())),
                    Err(_) => d.push(Diagnostic::error("kiln::wrong-value-type", item.span(), format!("{}: `{key}` holds a number out of range", self.what))),
                },
                _ => d.push(mismatch(&self.what, key, "a list of integers", item)),
            }
        }
        Some(Sp::new(out, v.span()))
    }

    /// A list of strings; a single string is accepted as a list of one.
    pub fn str_list(&self, key: &'static str, d: &mut Diags) -> Option<Sp<Vec<Sp<String>>>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Sp::new(vec![Sp::new(s.to_string(), v.span())], v.span())),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(Sp::new(s.to_string(), item.span())),
                        _ => d.push(mismatch(&self.what, key, "a list of strings", item)),
                    }
                }
                Some(Sp::new(out, v.span()))
            }
            _ => {
                d.push(mismatch(&self.what, key, "a list of strings", v));
                None
            }
        }
    }

    /// A sub-table.
    pub fn table(&self, key: &'static str, d: &mut Diags) -> Option<Table<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => {
                let span = self.key_span(key).unwrap_or_else(|| v.span());
                let what = if self.what == "spec" { format!("[{key}]") } else { format!("{} `{key}`", self.what) };
                Some(Table::new(t, span, what))
            }
            _ => {
                d.push(mismatch(&self.what, key, "a table", v));
                None
            }
        }
    }

    /// A sub-table of `name = "string"` entries, in file order.
    pub fn str_map(&self, key: &'static str, d: &mut Diags) -> Option<Sp<Vec<(Sp<String>, Sp<String>)>>> {
        let t = self.table(key, d)?;
        let mut out = Vec::new();
        for (k, v) in t.table.iter() {
            match v.get_ref() {
                DeValue::String(s) => out.push((Sp::new(k.get_ref().to_string(), k.span()), Sp::new(s.to_string(), v.span()))),
                _ => d.push(mismatch(&t.what, k.get_ref(), "a string", v)),
            }
        }
        Some(Sp::new(out, t.span.clone()))
    }

    /// A sub-table of `name = literal` entries, in file order.
    pub fn literal_map(&self, key: &'static str, d: &mut Diags) -> Option<Sp<Vec<(Sp<String>, Sp<Literal>)>>> {
        let t = self.table(key, d)?;
        let mut out = Vec::new();
        for (k, v) in t.table.iter() {
            if let Some(lit) = literal(v, &t.what, k.get_ref(), d) {
                out.push((Sp::new(k.get_ref().to_string(), k.span()), lit));
            }
        }
        Some(Sp::new(out, t.span.clone()))
    }

    /// Keys that the contract defines but this version does not implement yet.
    pub fn unsupported(&self, keys: &[&'static str], d: &mut Diags) {
        for key in keys {
            if let Some(v) = self.get(key) {
                let span = self.key_span(key).unwrap_or_else(|| v.span());
                d.push(
                    Diagnostic::error("kiln::unsupported", span, format!("{}: `{key}` is not supported by this version of kiln yet", self.what))
                        .label("not supported yet"),
                );
            }
        }
    }

    /// Reports every key that was never read.
    pub fn finish(&self, d: &mut Diags) {
        let asked = self.asked.borrow().clone();
        for (k, _) in self.table.iter() {
            let key = k.get_ref();
            if !asked.contains(&key.as_ref()) {
                let mut diag = Diagnostic::error("kiln::unknown-key", k.span(), format!("{}: unknown key `{key}`", self.what))
                    .label("unknown key");
                diag = match did_you_mean(key, asked.iter().copied()) {
                    Some(h) => diag.help(h),
                    None => {
                        let mut known = asked.clone();
                        known.sort();
                        known.dedup();
                        diag.help(format!("known keys here: {}", known.join(", ")))
                    }
                };
                d.push(diag);
            }
        }
    }
}

/// A TOML value as a literal (strings, numbers, booleans).
pub fn literal(v: &Spanned<DeValue<'_>>, what: &str, key: &str, d: &mut Diags) -> Option<Sp<Literal>> {
    let lit = match v.get_ref() {
        DeValue::String(s) => Literal::Str(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Literal::Int(n),
            Err(_) => {
                d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{what}: `{key}` is out of range")));
                return None;
            }
        },
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) => Literal::Float(x),
            Err(_) => {
                d.push(Diagnostic::error("kiln::wrong-value-type", v.span(), format!("{what}: `{key}` is not a number")));
                return None;
            }
        },
        DeValue::Boolean(b) => Literal::Bool(*b),
        DeValue::Datetime(dt) => Literal::Str(dt.to_string()),
        _ => {
            d.push(mismatch(what, key, "a string, number or boolean", v));
            return None;
        }
    };
    Some(Sp::new(lit, v.span()))
}
