//! Cuts a stream's decompressed bytes into its events: one JSON object per line (NDJSON),
//! objects one after another, or the elements of a top-level JSON array, whatever the chunk
//! borders. Pure and incremental: memory is one event, whatever the file's size.

/// What one top-level object of the stream became.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// The object's exact text (not yet checked to be valid JSON).
    Object(String),
    /// An object longer than the limit: its bytes were dropped as they came.
    Oversize { bytes: u64 },
}

/// The stream is not a sequence of JSON objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not JSON objects at byte {offset}: {problem}")]
pub struct SplitError {
    pub offset: u64,
    pub problem: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outside {
    /// Between top-level values.
    TopLevel,
    /// Inside a top-level array, before an element (just after `[` or `,`).
    ArrayBeforeElement { first: bool },
    /// Inside a top-level array, after an element.
    ArrayAfterElement,
}

#[derive(Debug)]
pub struct Splitter {
    max_object_bytes: usize,
    outside: Outside,
    /// Inside an object: its nesting depth (0: outside every object).
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The array state to return to once the object ends.
    in_array: bool,
    current: Vec<u8>,
    current_bytes: u64,
    offset: u64,
}

impl Splitter {
    pub fn new(max_object_bytes: usize) -> Self {
        Self {
            max_object_bytes,
            outside: Outside::TopLevel,
            depth: 0,
            in_string: false,
            escaped: false,
            in_array: false,
            current: Vec::new(),
            current_bytes: 0,
            offset: 0,
        }
    }

    fn error(&self, problem: &'static str) -> SplitError {
        SplitError { offset: self.offset, problem }
    }

    /// Feeds the next bytes; completed objects go to `out` in order.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Piece>) -> Result<(), SplitError> {
        let mut i = 0;
        while i < bytes.len() {
            if self.depth > 0 {
                i += self.scan_object(&bytes[i..], out)?;
                continue;
            }
            let byte = bytes[i];
            i += 1;
            self.offset += 1;
            if byte.is_ascii_whitespace() || (self.offset <= 3 && is_byte_order_mark(self.offset, byte)) {
                continue;
            }
            self.outside = match (self.outside, byte) {
                (Outside::TopLevel, b'[') => Outside::ArrayBeforeElement { first: true },
                (Outside::TopLevel, b'{') | (Outside::ArrayBeforeElement { .. }, b'{') => {
                    self.in_array = self.outside != Outside::TopLevel;
                    self.start_object();
                    self.outside
                }
                (Outside::ArrayBeforeElement { first: true }, b']') | (Outside::ArrayAfterElement, b']') => {
                    Outside::TopLevel
                }
                (Outside::ArrayAfterElement, b',') => Outside::ArrayBeforeElement { first: false },
                (Outside::TopLevel, _) => return Err(self.error("expected an object or an array of objects")),
                (Outside::ArrayBeforeElement { .. }, _) => return Err(self.error("an array element is not an object")),
                (Outside::ArrayAfterElement, _) => return Err(self.error("expected ',' or ']' after an element")),
            };
        }
        Ok(())
    }

    /// The stream ended: anything unfinished is an error (a truncated file).
    pub fn finish(&self) -> Result<(), SplitError> {
        match (self.depth, self.outside) {
            (0, Outside::TopLevel) => Ok(()),
            (0, _) => Err(self.error("the array is not closed")),
            _ => Err(self.error("the last object is cut off")),
        }
    }

    fn start_object(&mut self) {
        self.depth = 1;
        self.current.clear();
        self.current.push(b'{');
        self.current_bytes = 1;
    }

    /// Consumes bytes of the current object up to its end or the end of `bytes`; how many.
    fn scan_object(&mut self, bytes: &[u8], out: &mut Vec<Piece>) -> Result<usize, SplitError> {
        let mut end = None;
        for (i, &byte) in bytes.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        end = Some(i + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let used = end.unwrap_or(bytes.len());
        self.offset += used as u64;
        self.current_bytes += used as u64;
        if self.current_bytes <= self.max_object_bytes as u64 {
            self.current.extend_from_slice(&bytes[..used]);
        } else if !self.current.is_empty() {
            // Too long to forward: stop holding it, keep counting it.
            self.current = Vec::new();
        }
        if end.is_some() {
            let piece = if self.current_bytes <= self.max_object_bytes as u64 {
                let text = String::from_utf8(std::mem::take(&mut self.current))
                    .map_err(|_| self.error("an object is not UTF-8 text"))?;
                Piece::Object(text)
            } else {
                Piece::Oversize { bytes: self.current_bytes }
            };
            out.push(piece);
            self.outside = if self.in_array { Outside::ArrayAfterElement } else { Outside::TopLevel };
        }
        Ok(used)
    }
}

/// A UTF-8 byte order mark at the very start of the stream.
fn is_byte_order_mark(position: u64, byte: u8) -> bool {
    matches!((position, byte), (1, 0xEF) | (2, 0xBB) | (3, 0xBF))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_in(chunks: &[&[u8]], max: usize) -> Result<Vec<Piece>, SplitError> {
        let mut splitter = Splitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut out)?;
        }
        splitter.finish()?;
        Ok(out)
    }

    fn texts(pieces: Vec<Piece>) -> Vec<String> {
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Object(text) => text,
                Piece::Oversize { bytes } => format!("<{bytes}>"),
            })
            .collect()
    }

    #[test]
    fn ndjson_arrays_and_concatenated_objects_give_the_same_events_byte_for_byte() {
        let a = r#"{"action":"repo.create","x":{"y":[1,{"z":"}"}]}}"#;
        let b = r#"{"action":"a\"}\\","n":null}"#;
        let expected = vec![a.to_owned(), b.to_owned()];
        for text in [
            format!("{a}\n{b}\n"),
            format!("{a}\r\n{b}"),
            format!("{a}{b}"),
            format!("[{a},{b}]"),
            format!(" [\n  {a} ,\n  {b}\n]\n"),
            format!("\u{feff}{a}\n{b}"),
            format!("[{a}]\n[{b}]"),
        ] {
            assert_eq!(texts(split_in(&[text.as_bytes()], 1_000).expect(&text)), expected, "{text}");
        }
        assert!(split_in(&[b"", b"  \n", b"[]"], 10).expect("empty").is_empty());
    }

    #[test]
    fn what_is_not_a_sequence_of_objects_is_refused_with_its_offset() {
        for (text, offset) in
            [("ok", 1), ("[1,2]", 2), (r#"{"a":1} x"#, 9), (r#"[{"a":1} {"b":2}]"#, 10), (r#""text""#, 1)]
        {
            let err = split_in(&[text.as_bytes()], 100).expect_err(text);
            assert_eq!(err.offset, offset, "{text}: {err}");
        }
        assert!(split_in(&[br#"{"a":"#], 100).expect_err("cut").problem.contains("cut off"));
        assert!(split_in(&[br#"[{"a":1},"#], 100).expect_err("open").problem.contains("not closed"));
    }

    #[test]
    fn an_object_over_the_limit_is_counted_not_held() {
        let big = format!(r#"{{"action":"x","pad":"{}"}}"#, "p".repeat(500));
        let text = format!("{big}\n{{\"a\":1}}");
        let pieces = split_in(&[text.as_bytes()], 100).expect("split");
        assert_eq!(pieces, vec![Piece::Oversize { bytes: big.len() as u64 }, Piece::Object(r#"{"a":1}"#.into())]);
    }

    fn event_text() -> impl Strategy<Value = String> {
        (any::<u32>(), "[a-z{}\\[\\],:\" \\\\]{0,12}", 0..3usize).prop_map(|(n, s, nest)| {
            let value = serde_json::to_string(&s).expect("string");
            let mut inner = format!(r#"{{"action":"t.{n}","s":{value},"n":{n}}}"#);
            for _ in 0..nest {
                inner = format!(r#"{{"k":[{inner},{value}]}}"#);
            }
            inner
        })
    }

    proptest! {
        #[test]
        fn any_chunking_of_any_layout_gives_back_every_event(
            events in proptest::collection::vec(event_text(), 0..8),
            layout in 0..3usize,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let text = match layout {
                0 => events.iter().map(|e| format!("{e}\n")).collect::<String>(),
                1 => format!("[{}]", events.join(",\n")),
                _ => events.concat(),
            };
            let bytes = text.as_bytes();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for p in points {
                chunks.push(&bytes[from..p]);
                from = p;
            }
            chunks.push(&bytes[from..]);
            prop_assert_eq!(texts(split_in(&chunks, 10_000).expect("split")), events);
        }

        #[test]
        fn any_bytes_split_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 1..50usize) {
            let _ = split_in(&[&bytes], max);
        }
    }
}
