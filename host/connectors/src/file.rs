//! Bounded file sources: text lines, JSON lines, CSV with a header.

use crate::csv_rows::{self, BlankLinesAsRows};
use crate::{Poll, Source, SourceError};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use weir_core::spec::{FileFormat, SourceSpec, field_pointer};
use weir_core::time::BoundedOutOfOrderness;
use weir_core::{Batch, NO_TIMESTAMP};

/// Most bytes a file source puts in one batch.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// Longest record (line) a file source accepts.
const MAX_RECORD_BYTES: u64 = 256 << 20;

enum Reader {
    Lines(BufReader<File>),
    Csv {
        reader: Box<csv::Reader<BlankLinesAsRows<File>>>,
        header: Vec<String>,
        /// The column holding event time, if the spec names one.
        time_column: Option<usize>,
        row: Vec<u8>,
    },
}

/// Reads a file once, front to back, keeping the byte offset of every
/// record (the offset a checkpoint will record, and errors name).
pub struct FileSource {
    id: String,
    path: PathBuf,
    format: FileFormat,
    reader: Reader,
    offset: u64,
    line: Vec<u8>,
    timestamp: Option<String>,
    watermarks: BoundedOutOfOrderness,
}

impl FileSource {
    /// Opens the file of a `type: file` source spec.
    pub fn open(spec: &SourceSpec) -> Result<Self, SourceError> {
        let path = spec.path.clone().expect("invariant: validated specs give file sources a path");
        let format = spec.format.expect("invariant: validated specs give file sources a format");
        let err =
            |message: String| SourceError { source_id: spec.id.clone(), place: path.display().to_string(), message };
        let file = File::open(&path)
            .map_err(|e| err(format!("cannot open the input file: {e}. Check `path` in the spec.")))?;
        let reader = match format {
            FileFormat::Csv => {
                let header = |file: File, blank_rows: bool| {
                    let mut reader = csv::ReaderBuilder::new()
                        .has_headers(true)
                        .flexible(false)
                        .from_reader(BlankLinesAsRows::new(file, blank_rows));
                    let header: Vec<String> = reader
                        .headers()
                        .map_err(|e| err(format!("cannot read the CSV header row: {e}")))?
                        .iter()
                        .map(str::to_owned)
                        .collect();
                    Ok::<_, SourceError>((reader, header))
                };
                // Blank lines are rows only in a one-column file: read its
                // header once to know, then read from the start.
                let (_, first) = header(file, false)?;
                let again = File::open(&path).map_err(|e| err(format!("cannot open the input file again: {e}")))?;
                let (reader, header) = header(again, first.len() == 1)?;
                csv_rows::check_header(&header).map_err(err)?;
                let time_column = match &spec.timestamp {
                    None => None,
                    Some(t) => {
                        let name = t.strip_prefix('/').map_or(t.clone(), |p| p.replace("~1", "/").replace("~0", "~"));
                        Some(header.iter().position(|h| *h == name).ok_or_else(|| {
                            err(format!(
                                "the CSV header has no column `{name}` to take `timestamp` from (columns: {})",
                                header.join(", ")
                            ))
                        })?)
                    }
                };
                Reader::Csv { reader: Box::new(reader), header, time_column, row: Vec::new() }
            }
            _ => Reader::Lines(BufReader::with_capacity(1 << 16, file)),
        };
        Ok(FileSource {
            id: spec.id.clone(),
            path,
            format,
            reader,
            offset: 0,
            line: Vec::new(),
            timestamp: spec.timestamp.as_deref().map(field_pointer),
            watermarks: BoundedOutOfOrderness::new(spec.watermark.out_of_orderness_ms),
        })
    }

    fn err(&self, offset: u64, message: String) -> SourceError {
        SourceError {
            source_id: self.id.clone(),
            place: format!("{} at byte offset {offset}", self.path.display()),
            message,
        }
    }

    fn event_time(&self, value: &Value, offset: u64) -> Result<i64, SourceError> {
        let Some(pointer) = &self.timestamp else { return Ok(NO_TIMESTAMP) };
        match value.pointer(pointer) {
            Some(Value::Number(n)) if n.as_i64() == Some(i64::MIN) => {
                Err(self.err(offset, format!("timestamp `{pointer}` is out of range")))
            }
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64))
                .ok_or_else(|| self.err(offset, format!("timestamp `{pointer}` is {n}, not whole epoch milliseconds"))),
            Some(other) => Err(self
                .err(offset, format!("timestamp `{pointer}` must be a number of epoch milliseconds, found {other}"))),
            None => Err(self.err(
                offset,
                format!("record has no timestamp field `{pointer}`; fix the data or `timestamp` in the spec"),
            )),
        }
    }

    fn push(
        &mut self,
        batch: &mut Batch,
        value: &[u8],
        parsed: Option<&Value>,
        offset: u64,
    ) -> Result<(), SourceError> {
        let ts = match parsed {
            Some(v) => self.event_time(v, offset)?,
            None => NO_TIMESTAMP,
        };
        batch.push(b"", value, ts, offset);
        if ts != NO_TIMESTAMP
            && let Some(wm) = self.watermarks.on_event(ts)
        {
            batch.mark(wm);
        }
        Ok(())
    }

    fn next_line(&mut self, batch: &mut Batch) -> Result<bool, SourceError> {
        let Reader::Lines(reader) = &mut self.reader else { unreachable!("invariant: line formats use a line reader") };
        self.line.clear();
        let offset = self.offset;
        let n = std::io::Read::take(&mut *reader, MAX_RECORD_BYTES)
            .read_until(b'\n', &mut self.line)
            .map_err(|e| self.err(offset, format!("read failed: {e}")))?;
        if n as u64 == MAX_RECORD_BYTES && self.line.last() != Some(&b'\n') {
            return Err(self.err(
                offset,
                format!("record is longer than {} MiB; is this the right file and format?", MAX_RECORD_BYTES >> 20),
            ));
        }
        if n == 0 {
            return Ok(false);
        }
        self.offset += n as u64;
        let mut line = std::mem::take(&mut self.line);
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        let result = match self.format {
            FileFormat::Text => {
                let text =
                    std::str::from_utf8(&line).map_err(|e| self.err(offset, format!("line is not UTF-8: {e}")))?;
                let value = serde_json::to_vec(text).expect("invariant: a str always serializes to JSON");
                let parsed = self.timestamp.as_ref().map(|_| Value::String(text.to_owned()));
                self.push(batch, &value, parsed.as_ref(), offset)
            }
            _ if line.iter().all(u8::is_ascii_whitespace) => Ok(()),
            _ => {
                let parsed: Value = serde_json::from_slice(&line)
                    .map_err(|e| self.err(offset, format!("line is not valid JSON: {e}")))?;
                self.push(batch, &line, Some(&parsed), offset)
            }
        };
        self.line = line;
        result.map(|()| true)
    }

    fn next_csv(&mut self, batch: &mut Batch, record: &mut csv::StringRecord) -> Result<bool, SourceError> {
        let Reader::Csv { reader, header, time_column, row } = &mut self.reader else {
            unreachable!("invariant: csv uses a csv reader")
        };
        let inserted = reader.get_ref().inserted();
        let offset = BlankLinesAsRows::<File>::original_offset(inserted, reader.position().byte());
        let more = reader.read_record(record).map_err(|e| SourceError {
            source_id: self.id.clone(),
            place: format!("{} at byte offset {offset}", self.path.display()),
            message: format!("bad CSV row: {e}"),
        })?;
        if !more {
            return Ok(false);
        }
        let inserted = reader.get_ref().inserted();
        let offset =
            record.position().map_or(offset, |p| BlankLinesAsRows::<File>::original_offset(inserted, p.byte()));
        let ts = match time_column {
            Some(c) => csv_rows::timestamp_cell(&record[*c]).map_err(|m| SourceError {
                source_id: self.id.clone(),
                place: format!("{} at byte offset {offset}", self.path.display()),
                message: format!("timestamp column `{}` {m}", header[*c]),
            })?,
            None => NO_TIMESTAMP,
        };
        row.clear();
        csv_rows::write_row(header, record, row);
        batch.push(b"", row, ts, offset);
        if ts != NO_TIMESTAMP
            && let Some(wm) = self.watermarks.on_event(ts)
        {
            batch.mark(wm);
        }
        Ok(true)
    }
}

impl FileSource {
    /// The byte offset of the next record.
    fn next_offset(&self) -> u64 {
        match &self.reader {
            Reader::Lines(_) => self.offset,
            Reader::Csv { reader, .. } => {
                BlankLinesAsRows::<File>::original_offset(reader.get_ref().inserted(), reader.position().byte())
            }
        }
    }
}

impl Source for FileSource {
    /// One split: the whole file (a file source reads with parallelism 1).
    fn position(&self) -> Vec<Vec<u8>> {
        vec![crate::encode_position(self.next_offset(), self.watermarks.max_seen())]
    }

    fn seek(&mut self, splits: &[&[u8]]) -> Result<(), SourceError> {
        let [position] = splits else {
            return Err(self.err(0, format!("the checkpoint holds {} splits for this file source, which reads one; restore from another checkpoint", splits.len())));
        };
        let (offset, max_seen) = crate::decode_position(position)
            .ok_or_else(|| self.err(0, "the checkpointed position of this source is damaged".into()))?;
        self.watermarks.resume(max_seen);
        match &mut self.reader {
            Reader::Lines(reader) => {
                use std::io::Seek;
                let len = reader.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
                if offset > len {
                    return Err(self.err(
                        offset,
                        format!(
                            "the checkpoint goes on from this offset, but the file has only {len} bytes: it changed since; restore it, or start the job over"
                        ),
                    ));
                }
                reader
                    .seek(std::io::SeekFrom::Start(offset))
                    .map_err(|e| self.err(offset, format!("cannot seek: {e}")))?;
                self.offset = offset;
            }
            Reader::Csv { .. } => {
                // CSV rows are read from the header on, up to the offset
                // (the csv reader keeps its own buffer and line count).
                let mut record = csv::StringRecord::new();
                let mut scratch = Batch::new();
                while self.next_offset() < offset {
                    scratch.clear();
                    if !self.next_csv(&mut scratch, &mut record)? {
                        let at = self.next_offset();
                        return Err(self.err(
                            at,
                            format!(
                                "the checkpoint goes on from offset {offset}, but the file ends here: it changed \
                                 since; restore it, or start the job over"
                            ),
                        ));
                    }
                }
                // Replaying the rows before moved the watermark generator.
                self.watermarks.resume(max_seen);
            }
        }
        Ok(())
    }

    fn next_batch(&mut self, batch: &mut Batch, max: usize) -> Result<Poll, SourceError> {
        let mut record = csv::StringRecord::new();
        // Cut by bytes too, far below the 4 GiB the flat offsets allow.
        while batch.len() < max && batch.bytes() < MAX_BATCH_BYTES {
            let more = match self.format {
                FileFormat::Csv => self.next_csv(batch, &mut record)?,
                _ => self.next_line(batch)?,
            };
            if !more {
                return Ok(if batch.is_void() { Poll::End } else { Poll::Ready });
            }
        }
        Ok(Poll::Ready)
    }
}
