//! Configuration diagnostics: every message names `file:line:column`.

use std::fmt;

/// A 1-based line and column in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Turns byte offsets into line and column for one file.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap {
    /// Byte offset at which each line starts.
    line_starts: Vec<usize>,
    /// Whether each line is pure ASCII (its columns are byte offsets).
    ascii_lines: Vec<bool>,
    /// The text, to count characters (not bytes) for the column.
    text: String,
}

impl SourceMap {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        // A column is a count of characters; on an ASCII line it is the byte
        // offset, so a long one-line file does not make each lookup linear.
        let ascii_lines = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| text.get(start..line_starts.get(i + 1).copied().unwrap_or(text.len())).is_some_and(str::is_ascii))
            .collect();
        Self { line_starts, ascii_lines, text: text.to_string() }
    }

    pub(crate) fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = if self.ascii_lines.get(line).copied().unwrap_or(false) {
            offset - start
        } else {
            self.text.get(start..offset).map_or(offset - start, |s| s.chars().count())
        };
        Pos { line: u32::try_from(line + 1).unwrap_or(u32::MAX), column: u32::try_from(column + 1).unwrap_or(u32::MAX) }
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration is used, but something in it is ignored or suspicious.
    Warning,
}

/// One message about a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// File name as given to the parser (usually `userconfig.xml` or `cluster.xml`).
    pub file: String,
    /// Where in the file.
    pub pos: Pos,
    /// What was found and what was expected.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}:{}: {kind}{}", self.file, self.pos, self.message)
    }
}

/// Collects diagnostics while a file is read and checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnostics {
    pub(crate) file: String,
    pub(crate) items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str) -> Self {
        Self { file: file.to_string(), items: Vec::new() }
    }

    pub(crate) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Error, pos, message.into());
    }

    pub(crate) fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(Severity::Warning, pos, message.into());
    }

    fn push(&mut self, severity: Severity, pos: Pos, message: String) {
        self.items.push(Diagnostic { severity, file: self.file.clone(), pos, message });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Splits into the result: the value with its warnings, or every diagnostic.
    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<Parsed<T>, ConfigError> {
        self.items.sort_by_key(|d| d.pos);
        match value {
            Some(value) if !self.has_errors() => Ok(Parsed { value, warnings: self.items }),
            _ => Err(ConfigError { diagnostics: self.items, blanks: Vec::new() }),
        }
    }
}

/// A successfully read configuration and the warnings it produced.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    /// The typed configuration.
    pub value: T,
    /// Unknown attributes and other things that were ignored.
    pub warnings: Vec<Diagnostic>,
}

/// A configuration that cannot be used: every error found (and the warnings),
/// sorted by position, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// A template's blank macros (`<macro name value=""/>` in use): when
    /// not empty, the errors are exactly these, to fill.
    pub blanks: Vec<String>,
}

impl ConfigError {
    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    /// A single-error value, for failures that are not tied to a place in a file.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        let mut d = Diagnostics::new(file);
        d.error(Pos { line: 1, column: 1 }, message);
        Self { diagnostics: d.items, blanks: Vec::new() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for d in &self.diagnostics {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{d}")?;
        }
        Ok(())
    }
}
