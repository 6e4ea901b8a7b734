//! Minimal reader for the embedded CSV tables.
//!
//! None of the embedded files contains a quote character (`prepare.py` checks
//! the one it derives), so a field never holds a comma and a plain split is
//! exact; a quote is rejected rather than misread. Not pulling in the `csv`
//! crate keeps the build small.

use crate::EnrichError;
use std::str::FromStr;

/// One data row: the requested columns, in the order they were requested.
pub(crate) struct Row<'a> {
    pub file: &'a str,
    pub line: usize,
    pub fields: Vec<&'a str>,
}

impl Row<'_> {
    pub fn err(&self, msg: impl Into<String>) -> EnrichError {
        err(self.file, self.line, msg)
    }

    /// Column `i` (index into the requested columns) parsed as `T`.
    pub fn parse<T: FromStr>(&self, i: usize, what: &str) -> Result<T, EnrichError> {
        self.fields[i]
            .parse()
            .map_err(|_| self.err(format!("bad {what} {:?}", self.fields[i])))
    }
}

pub(crate) fn err(file: &str, line: usize, msg: impl Into<String>) -> EnrichError {
    EnrichError::Csv {
        file: file.to_owned(),
        line,
        msg: msg.into(),
    }
}

/// Splits `text` into rows holding the columns named in `want`, located by
/// the header so that extra or reordered columns are fine.
pub(crate) fn rows<'a>(
    file: &'a str,
    text: &'a str,
    want: &[&str],
) -> Result<Vec<Row<'a>>, EnrichError> {
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = match lines.next() {
        Some((_, h)) => h.trim_start_matches('\u{feff}').split(',').collect(),
        None => return Err(err(file, 1, "empty file")),
    };
    let idx = want
        .iter()
        .map(|w| {
            header
                .iter()
                .position(|h| h == w)
                .ok_or_else(|| err(file, 1, format!("no column {w}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (n, l) in lines {
        let line = n + 1;
        if l.is_empty() {
            continue;
        }
        if l.contains('"') {
            return Err(err(file, line, "quoted fields are not supported"));
        }
        let all: Vec<&str> = l.split(',').collect();
        if all.len() != header.len() {
            return Err(err(
                file,
                line,
                format!("{} fields, header has {}", all.len(), header.len()),
            ));
        }
        out.push(Row {
            file,
            line,
            fields: idx.iter().map(|&i| all[i]).collect(),
        });
    }
    Ok(out)
}
