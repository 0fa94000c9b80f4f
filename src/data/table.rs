//! The three FER2013 CSV layouts, recognized from the header.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::{fer2013_class_names, resize_gray, shown, Dataset, Format, Loaded, FER2013_CLASSES};
use crate::{bail, Error, Result};

const KNOWN_HEADERS: &str = "'emotion,pixels,Usage' (Kaggle fer2013.csv), 'emotion,pixels' (fer2013 without Usage), \
                             'label,feature' (train.csv) or 'id,feature' (test.csv)";

#[derive(Clone, Copy, PartialEq)]
enum Part {
    Train,
    Val,
    Test,
}

/// Rows of one part, as bytes until the end (resized then if needed).
#[derive(Default)]
struct Rows {
    pixels: Vec<u8>,
    labels: Vec<u32>,
    ids: Vec<String>,
}

struct Columns {
    format: Format,
    label: Option<usize>,
    pixels: usize,
    usage: Option<usize>,
    id: Option<usize>,
    names: String,
}

fn columns(header: &[String]) -> Option<Columns> {
    let find = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let mut sorted: Vec<String> = header.iter().map(|h| h.to_ascii_lowercase()).collect();
    sorted.sort();
    let sorted: Vec<&str> = sorted.iter().map(|s| s.as_str()).collect();
    let names = header.join(",");
    match sorted.as_slice() {
        ["emotion", "pixels", "usage"] => Some(Columns {
            format: Format::Fer2013Csv,
            label: find("emotion"),
            pixels: find("pixels")?,
            usage: find("usage"),
            id: None,
            names,
        }),
        ["emotion", "pixels"] => Some(Columns {
            format: Format::Fer2013Csv,
            label: find("emotion"),
            pixels: find("pixels")?,
            usage: None,
            id: None,
            names,
        }),
        ["feature", "label"] => Some(Columns {
            format: Format::TrainCsv,
            label: find("label"),
            pixels: find("feature")?,
            usage: None,
            id: None,
            names,
        }),
        ["feature", "id"] => Some(Columns {
            format: Format::TestCsv,
            label: None,
            pixels: find("feature")?,
            usage: None,
            id: find("id"),
            names,
        }),
        _ => None,
    }
}

/// Parses space-separated pixel bytes of one row into `out`; returns how many.
fn parse_pixels(field: &[u8], out: &mut Vec<u8>, at: &str, expected: Option<usize>) -> Result<usize> {
    let mut count = 0usize;
    for tok in field.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty()) {
        count += 1;
        let mut v: u32 = 0;
        let mut ok = true;
        for &b in tok {
            if b.is_ascii_digit() && v <= 255 {
                v = v * 10 + (b - b'0') as u32;
            } else if b.is_ascii_digit() {
                v = 256; // keeps growing past 255: out of range
            } else {
                ok = false;
                break;
            }
        }
        let of = match expected {
            Some(e) => format!(" of {e}"),
            None => String::new(),
        };
        if !ok {
            bail!(
                "{at}: pixel {count}{of} is {}, not a number; expected an integer 0..255",
                shown(&String::from_utf8_lossy(tok), 20)
            );
        }
        if v > 255 {
            bail!("{at}: pixel {count}{of} is {}, out of range; expected an integer 0..255", shown(&String::from_utf8_lossy(tok), 20));
        }
        out.push(v as u8);
    }
    Ok(count)
}

/// Logical CSV records with the number of the line each starts on. Line numbers are
/// counted here (the csv crate's are one short after CRLF line ends); a quoted field may
/// span lines; blank lines are skipped; a UTF-8 BOM at the start is dropped.
struct Records {
    reader: BufReader<File>,
    file: String,
    line: usize,
    buf: Vec<u8>,
}

impl Records {
    fn next(&mut self, rec: &mut csv::ByteRecord) -> Result<Option<usize>> {
        loop {
            self.buf.clear();
            let start = self.line + 1;
            let mut quotes = 0usize;
            loop {
                let from = self.buf.len();
                let got = self
                    .reader
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|e| Error::new(format!("{}:{}: cannot read: {e}", self.file, self.line + 1)))?;
                if got == 0 {
                    if quotes % 2 == 1 {
                        bail!("{}:{start}: a quoted field is not closed by the end of the file; expected a closing '\"'", self.file);
                    }
                    break;
                }
                self.line += 1;
                if self.line == 1 && self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    self.buf.drain(..3);
                }
                quotes += self.buf[from..].iter().filter(|&&b| b == b'"').count();
                if quotes.is_multiple_of(2) {
                    break;
                }
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let mut r = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&self.buf[..]);
            r.read_byte_record(rec).map_err(|e| Error::new(format!("{}:{start}: cannot parse the CSV record: {e}", self.file)))?;
            return Ok(Some(start));
        }
    }
}

fn field_str(rec: &csv::ByteRecord, i: usize) -> String {
    String::from_utf8_lossy(rec.get(i).unwrap_or(b"")).trim().to_string()
}

pub(super) fn load_csv(path: &Path, target_hw: (usize, usize)) -> Result<Loaded> {
    let file = path.display().to_string();
    let f = File::open(path).map_err(|e| Error::new(format!("{file}: cannot open: {e}; expected a readable FER2013 CSV file")))?;
    let reader = BufReader::with_capacity(1 << 20, f);
    let mut lines = Records { reader, file: file.clone(), line: 0, buf: Vec::new() };
    let mut rec = csv::ByteRecord::new();

    // Header.
    let Some(header_line) = lines.next(&mut rec)? else {
        bail!("{file}:1: empty file; expected a header line: {KNOWN_HEADERS}");
    };
    let header: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).trim().trim_start_matches('\u{feff}').trim().to_string()).collect();
    let Some(cols) = columns(&header) else {
        bail!("{file}:{header_line}: unknown header {}; expected {KNOWN_HEADERS}", shown(&header.join(","), 80));
    };
    let nfields = header.len();

    let mut parts = [Rows::default(), Rows::default(), Rows::default()];
    let mut side: Option<usize> = None;
    let mut npix: usize = 0;
    let mut rows = 0usize;
    while let Some(line) = lines.next(&mut rec)? {
        let at = format!("{file}:{line}");
        if rec.len() != nfields {
            bail!("{at}: found {} field(s), expected {nfields} ({})", rec.len(), cols.names);
        }
        let part = match cols.usage {
            None => {
                if cols.format == Format::TestCsv {
                    Part::Test
                } else {
                    Part::Train
                }
            }
            Some(u) => {
                let v = field_str(&rec, u);
                match v.to_ascii_lowercase().as_str() {
                    "training" => Part::Train,
                    "publictest" => Part::Val,
                    "privatetest" => Part::Test,
                    _ => bail!("{at}: found Usage {}, expected Training, PublicTest or PrivateTest", shown(&v, 40)),
                }
            }
        };
        let rows_of = &mut parts[part as usize];
        if let Some(l) = cols.label {
            let v = field_str(&rec, l);
            let col = &header[l];
            match v.parse::<u32>() {
                Ok(x) if (x as usize) < FER2013_CLASSES.len() => rows_of.labels.push(x),
                _ => bail!(
                    "{at}: found {col} {}, expected an integer 0..6 (0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral)",
                    shown(&v, 40)
                ),
            }
        }
        let id = match cols.id {
            Some(i) => {
                let v = field_str(&rec, i);
                if v.is_empty() {
                    bail!("{at}: found an empty id, expected a non-empty id");
                }
                v
            }
            None => line.to_string(),
        };
        rows_of.ids.push(id);
        let pix_field = rec.get(cols.pixels).unwrap_or(b"");
        let start = rows_of.pixels.len();
        let got = parse_pixels(pix_field, &mut rows_of.pixels, &at, side.map(|_| npix))?;
        match side {
            None => {
                let s = (got as f64).sqrt().round() as usize;
                if got == 0 || s * s != got {
                    bail!(
                        "{at}: found {got} pixels on the first data row, expected a perfect square count (2304 = 48x48 for FER2013); \
                         the first row fixes the image size for the whole file"
                    );
                }
                side = Some(s);
                npix = got;
            }
            Some(s) => {
                if got != npix {
                    rows_of.pixels.truncate(start);
                    bail!("{at}: found {got} pixels, expected {npix} ({s}x{s}, as on the first data row)");
                }
            }
        }
        rows += 1;
    }
    if rows == 0 {
        bail!("{file}:{}: no data rows after the header, expected at least one row ({})", header_line + 1, cols.names);
    }

    let s = side.unwrap();
    let mut warnings = Vec::new();
    if (s, s) != target_hw {
        warnings.push(format!(
            "{file}: resized all {rows} images from {s}x{s} to {}x{} (bilinear)",
            target_hw.0, target_hw.1
        ));
    }
    let labelled = cols.format != Format::TestCsv;
    let [train, val, test] = parts.map(|r| {
        let n = r.ids.len();
        if n == 0 {
            return None;
        }
        let mut images = Vec::with_capacity(n * target_hw.0 * target_hw.1);
        for i in 0..n {
            let img = &r.pixels[i * npix..(i + 1) * npix];
            let img = resize_gray(img, (s, s), target_hw);
            images.extend(img.iter().map(|&b| b as f32 / 255.0));
        }
        Some(Dataset {
            images,
            labels: if labelled { r.labels } else { Vec::new() },
            n,
            h: target_hw.0,
            w: target_hw.1,
            class_names: fer2013_class_names(),
            ids: r.ids,
            masks: None,
            labelled,
        })
    });
    Ok(Loaded { format: cols.format, train, val, test, warnings, source: file })
}
