//! Cutting a container's output into lines.
//!
//! Backends hand over output in chunks that follow the container's writes, not its lines: a
//! chunk may hold several lines or end in the middle of one (Docker also splits lines longer
//! than 16 KiB). Bytes are kept per stream until their newline arrives, and only then decoded,
//! so a UTF-8 character cut between two chunks survives.

use crate::instance::{LogLine, LogStream};

/// Buffers the unfinished line of each stream.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    /// Bytes of stdout after its last newline.
    stdout: Vec<u8>,
    /// Bytes of stderr after its last newline.
    stderr: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk of `stream`, returning the lines it completes, in order.
    pub(crate) fn push(&mut self, stream: LogStream, chunk: &[u8]) -> Vec<LogLine> {
        let pending = self.pending(stream);
        let mut lines = Vec::new();
        let mut rest = chunk;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&rest[..newline]);
            lines.push(LogLine {
                stream,
                line: decode(pending),
            });
            pending.clear();
            rest = &rest[newline + 1..];
        }
        pending.extend_from_slice(rest);
        lines
    }

    /// Ends both streams, returning their unfinished lines (stdout first), if any.
    pub(crate) fn finish(&mut self) -> Vec<LogLine> {
        [LogStream::Stdout, LogStream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let pending = self.pending(stream);
                if pending.is_empty() {
                    return None;
                }
                let line = decode(pending);
                pending.clear();
                Some(LogLine { stream, line })
            })
            .collect()
    }

    fn pending(&mut self, stream: LogStream) -> &mut Vec<u8> {
        match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        }
    }
}

/// One line's text, without a Windows-style trailing `\r`; invalid UTF-8 becomes U+FFFD.
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(line: &str) -> LogLine {
        LogLine {
            stream: LogStream::Stdout,
            line: line.to_owned(),
        }
    }

    fn err(line: &str) -> LogLine {
        LogLine {
            stream: LogStream::Stderr,
            line: line.to_owned(),
        }
    }

    #[test]
    fn one_chunk_with_several_lines() {
        let mut split = LineSplitter::default();
        assert_eq!(
            split.push(LogStream::Stdout, b"a\nb\n\nc\n"),
            [out("a"), out("b"), out(""), out("c")]
        );
        assert!(split.finish().is_empty());
    }

    #[test]
    fn a_line_across_chunks() {
        let mut split = LineSplitter::default();
        assert!(split.push(LogStream::Stdout, b"hel").is_empty());
        assert!(split.push(LogStream::Stdout, b"lo-").is_empty());
        assert_eq!(split.push(LogStream::Stdout, b"log\nnext"), [out("hello-log")]);
        assert_eq!(split.push(LogStream::Stdout, b"\n"), [out("next")]);
    }

    #[test]
    fn streams_are_buffered_apart() {
        let mut split = LineSplitter::default();
        assert!(split.push(LogStream::Stdout, b"out-").is_empty());
        assert_eq!(split.push(LogStream::Stderr, b"err\nerr-"), [err("err")]);
        assert_eq!(split.push(LogStream::Stdout, b"1\n"), [out("out-1")]);
        assert_eq!(split.push(LogStream::Stderr, b"2\n"), [err("err-2")]);
    }

    #[test]
    fn finish_flushes_unfinished_lines() {
        let mut split = LineSplitter::default();
        split.push(LogStream::Stderr, b"no newline");
        split.push(LogStream::Stdout, b"last");
        assert_eq!(split.finish(), [out("last"), err("no newline")]);
        assert!(split.finish().is_empty());
    }

    #[test]
    fn crlf_and_split_utf8() {
        let mut split = LineSplitter::default();
        let text = "grüße\r\n".as_bytes();
        // Cut inside the two-byte 'ü'.
        assert!(split.push(LogStream::Stdout, &text[..3]).is_empty());
        assert_eq!(split.push(LogStream::Stdout, &text[3..]), [out("grüße")]);
    }
}
