//! SafeKit 8.2 configuration files: `userconfig.xml` (one per module) and
//! `cluster.xml` (one per cluster).
//!
//! Reading goes in three steps, each reporting `file:line:column`:
//! 1. `xml`: the file becomes a positioned tree (syntax errors stop here);
//! 2. `macros`: `<macro>` and `%NAME%` are expanded in place;
//! 3. `userconfig`/`cluster`: the typed value is built and checked. Unknown
//!    elements are errors, unknown attributes warnings, as in SafeKit.
//!
//! No input panics: the parsers are fuzzed (`fuzz/`) and round-tripped with
//! proptest against the writer (`write`).

mod cluster;
mod error;
mod macros;
mod model;
mod read;
mod time;
mod userconfig;
pub mod write;
mod xml;

pub use error::{ConfigError, Diagnostic, Parsed, Pos, Severity};
pub use macros::EnvLookup;
pub use model::*;
pub use time::{format_time, parse_time, TimeUnit};

use error::{Diagnostics, SourceMap};

/// Options for reading a `userconfig.xml`.
#[derive(Clone, Copy)]
pub struct UserConfigOptions<'a> {
    /// File name used in messages.
    pub file: &'a str,
    /// The cluster, to check lan and node names; `None` skips those checks.
    pub cluster: Option<&'a ClusterConfig>,
    /// Environment lookup for `%NAME%`.
    pub env: EnvLookup<'a>,
    /// `safekit confcheck`: refuse placeholders such as `VIRTUAL_TO_BE_DEFINED`.
    pub confcheck: bool,
}

fn no_env(_: &str) -> Option<String> {
    None
}

impl<'a> UserConfigOptions<'a> {
    /// Defaults: file `userconfig.xml`, no cluster, no environment, not confcheck.
    pub fn new() -> Self {
        Self { file: "userconfig.xml", cluster: None, env: &no_env, confcheck: false }
    }
}

impl Default for UserConfigOptions<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads a `userconfig.xml`.
pub fn parse_userconfig(text: &str, opts: UserConfigOptions<'_>) -> Result<Parsed<UserConfig>, ConfigError> {
    let map = SourceMap::new(text);
    let mut d = Diagnostics::new(opts.file);
    let mut blank_names = Vec::new();
    let value = xml::parse(text, &map, &mut d).and_then(|mut root| {
        let (macros, blanks) = macros::expand_tree(&mut root, opts.env, &mut d);
        if blanks.is_empty() {
            return userconfig::build(&root, macros, opts.cluster, opts.confcheck, &mut d);
        }
        // A template with blanks: what to fill is all there is to say (the
        // rest would be errors about the empty values); checked once filled.
        for b in blanks {
            let uses: Vec<String> = b.uses.iter().map(ToString::to_string).collect();
            d.error(b.pos, format!("macro {} is blank: fill its value (used at {})", b.name, uses.join(", ")));
            blank_names.push(b.name);
        }
        None
    });
    d.finish(value).map_err(|mut e| {
        e.blanks = blank_names;
        e
    })
}

/// Reads a `cluster.xml`; `file` is the name used in messages.
pub fn parse_cluster(text: &str, file: &str) -> Result<Parsed<ClusterConfig>, ConfigError> {
    let map = SourceMap::new(text);
    let mut d = Diagnostics::new(file);
    let value = xml::parse(text, &map, &mut d).and_then(|root| cluster::build(&root, &mut d));
    d.finish(value)
}
