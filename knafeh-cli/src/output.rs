//! Standard output, flushed after every line so that a stream's messages
//! show as they arrive, also through a pipe.

use std::io::{self, Write};

use knafeh::Code;

use crate::fail::Failure;

/// Where results go.
pub(crate) struct Output {
    out: Box<dyn Write + Send>,
}

impl Output {
    /// Standard output.
    pub(crate) fn stdout() -> Self {
        Output {
            out: Box::new(io::stdout()),
        }
    }

    /// Writes `line` and a newline.
    pub(crate) fn line(&mut self, line: &str) -> Result<(), Failure> {
        self.text(&format!("{line}\n"))
    }

    /// Writes a JSON document as one line (documents the server formatted
    /// over several lines are re-encoded compactly).
    pub(crate) fn json_line(&mut self, json: &str) -> Result<(), Failure> {
        if !json.contains('\n') {
            return self.line(json);
        }
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(value) => self.line(&value.to_string()),
            Err(_) => self.line(&json.replace('\n', " ")),
        }
    }

    /// Writes `text` as it is.
    pub(crate) fn text(&mut self, text: &str) -> Result<(), Failure> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| {
                // E.g. `| head -1`: whoever read the output stopped.
                Failure::new(Code::Cancelled, format!("cannot write the output: {e}"))
            })
    }
}
