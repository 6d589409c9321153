//! CSV rows as JSON objects, exactly: columns in header order, numbers
//! with the cell's own digits (never rounded through `f64`), everything
//! else as a JSON string; a duplicate column name is an error, and in a
//! one-column file a blank line is a row with an empty value.

use std::collections::HashSet;
use std::io::{self, Read};

/// Checks a header row: names must be unique.
pub(crate) fn check_header(header: &[String]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for (i, name) in header.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            return Err(format!(
                "the CSV header names column `{name}` twice (column {} again); rename one so no value is lost",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Whether `cell` is a JSON number as written (no spaces, no `NaN`).
fn is_number(cell: &str) -> bool {
    !cell.is_empty()
        && cell.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        && serde_json::from_str::<serde_json::Number>(cell).is_ok()
}

/// Writes the row as a JSON object into `out`.
pub(crate) fn write_row(header: &[String], record: &csv::StringRecord, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, cell)) in header.iter().zip(record.iter()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name).expect("invariant: writing JSON to a Vec cannot fail");
        out.push(b':');
        if is_number(cell) {
            out.extend_from_slice(cell.as_bytes());
        } else {
            serde_json::to_writer(&mut *out, cell).expect("invariant: writing JSON to a Vec cannot fail");
        }
    }
    out.push(b'}');
}

/// The event time in a row's cell: whole epoch milliseconds.
pub(crate) fn timestamp_cell(cell: &str) -> Result<i64, String> {
    if let Ok(t) = cell.parse::<i64>() {
        return if t == i64::MIN { Err("is out of range".into()) } else { Ok(t) };
    }
    match cell.parse::<f64>() {
        Ok(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i64),
        Ok(_) => Err(format!("is {cell}, not whole epoch milliseconds")),
        Err(_) => Err(format!("must be a number of epoch milliseconds, found {cell:?}")),
    }
}

/// Where the CSV parser is inside a record, tracked as csv-core does: a
/// quote opens a quoted field only at the start of a field; inside one,
/// `""` is an escaped quote and a lone quote closes it; after that, other
/// bytes continue the field as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Start,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Reads a one-column CSV file with each blank line after the header
/// (outside quotes) turned into `""`, a row with an empty value, which the
/// csv crate would otherwise skip. Keeps where it inserted, to map
/// positions back to the file's own byte offsets.
pub(crate) struct BlankLinesAsRows<R> {
    inner: R,
    enabled: bool,
    buf: Vec<u8>,
    at: usize,
    field: Field,
    /// At the start of a line (only `\r` seen on it so far).
    line_start: bool,
    /// The header line has ended (blank lines before it are not rows).
    header_done: bool,
    /// Positions in the output at which `""` was inserted.
    inserted: Vec<u64>,
    produced: u64,
}

impl<R: Read> BlankLinesAsRows<R> {
    /// Reads `inner`, turning blank lines into rows when `enabled`.
    pub fn new(inner: R, enabled: bool) -> Self {
        BlankLinesAsRows {
            inner,
            enabled,
            buf: Vec::new(),
            at: 0,
            field: Field::Start,
            line_start: true,
            header_done: false,
            inserted: Vec::new(),
            produced: 0,
        }
    }

    /// The file offset of output position `pos`.
    pub fn original_offset(inserted: &[u64], pos: u64) -> u64 {
        pos - 2 * inserted.partition_point(|&p| p < pos) as u64
    }

    pub fn inserted(&self) -> &[u64] {
        &self.inserted
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut raw = [0u8; 1 << 15];
        let n = self.inner.read(&mut raw)?;
        self.buf.clear();
        self.at = 0;
        for &b in &raw[..n] {
            let outside = self.field != Field::Quoted;
            if b == b'\n' && outside {
                // The `\n` of a line that held nothing (or only `\r`).
                if self.line_start && self.header_done && self.enabled {
                    self.inserted.push(self.produced + self.buf.len() as u64);
                    self.buf.extend_from_slice(b"\"\"");
                }
                if !self.line_start {
                    self.header_done = true;
                }
                self.line_start = true;
                self.field = Field::Start;
            } else {
                self.line_start = self.line_start && b == b'\r';
                self.field = match (self.field, b) {
                    (Field::Start, b'"') => Field::Quoted,
                    (Field::Start | Field::Unquoted | Field::QuoteInQuoted, b',') => Field::Start,
                    (Field::Start, b'\r') => Field::Start,
                    (Field::Start | Field::Unquoted, _) => Field::Unquoted,
                    (Field::Quoted, b'"') => Field::QuoteInQuoted,
                    (Field::Quoted, _) => Field::Quoted,
                    (Field::QuoteInQuoted, b'"') => Field::Quoted,
                    (Field::QuoteInQuoted, b'\r') => Field::QuoteInQuoted,
                    (Field::QuoteInQuoted, _) => Field::Unquoted,
                };
            }
            self.buf.push(b);
        }
        Ok(())
    }
}

impl<R: Read> Read for BlankLinesAsRows<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        self.produced += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &str) -> Vec<String> {
        let mut r = csv::ReaderBuilder::new().from_reader(BlankLinesAsRows::new(data.as_bytes(), true));
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
        let mut out = Vec::new();
        let mut rec = csv::StringRecord::new();
        while r.read_record(&mut rec).unwrap() {
            let mut b = Vec::new();
            write_row(&header, &rec, &mut b);
            out.push(String::from_utf8(b).unwrap());
        }
        out
    }

    #[test]
    fn blank_lines_of_a_one_column_file_are_rows_with_an_empty_value() {
        assert_eq!(rows("name\na\n\nb\n"), vec![r#"{"name":"a"}"#, r#"{"name":""}"#, r#"{"name":"b"}"#]);
        assert_eq!(rows("name\r\n\r\nb\r\n"), vec![r#"{"name":""}"#, r#"{"name":"b"}"#]);
        assert_eq!(rows("name\n\"x\n\ny\"\n"), vec![r#"{"name":"x\n\ny"}"#], "blank lines inside quotes stay");
        assert_eq!(
            rows("size\n6\" ruler\n\n\"a\n\nb\"\n"),
            vec![r#"{"size":"6\" ruler"}"#, r#"{"size":""}"#, r#"{"size":"a\n\nb"}"#],
            "a quote inside an unquoted field opens nothing"
        );
        assert_eq!(rows("\n\nname\na\n"), vec![r#"{"name":"a"}"#], "blank lines before the header are not rows");
    }

    #[test]
    fn numbers_keep_their_digits_and_columns_their_order() {
        let got =
            rows("z,id,price,text\n1,123456789012345678901234567890,0.1000000000000000055511151231257827,1e400x\n");
        assert_eq!(
            got,
            vec![
                r#"{"z":1,"id":123456789012345678901234567890,"price":0.1000000000000000055511151231257827,"text":"1e400x"}"#
            ]
        );
        assert_eq!(rows("a\n 1\n"), vec![r#"{"a":" 1"}"#], "a cell with spaces is text");
        assert_eq!(rows("a\nNaN\n"), vec![r#"{"a":"NaN"}"#]);
    }

    #[test]
    fn duplicate_columns_are_refused_by_name() {
        let e = check_header(&["a".into(), "b".into(), "a".into()]).unwrap_err();
        assert!(e.contains("`a` twice (column 3 again)"), "{e}");
    }

    #[test]
    fn positions_map_back_to_file_offsets() {
        // "name\n" (5) "\n" → inserted at output 5; "b" is at file 6, output 8.
        assert_eq!(BlankLinesAsRows::<&[u8]>::original_offset(&[5], 5), 5);
        assert_eq!(BlankLinesAsRows::<&[u8]>::original_offset(&[5], 8), 6);
    }
}
