//! `<notreplicated path=…>` and `<notreplicated regexpath=…>`: what stays
//! local. A regexpath is a POSIX ERE matched against the relative path; with
//! a leading `!` only matching files are replicated (directories always are,
//! so the matching files have somewhere to go).

use regex::bytes::Regex;

use crate::config::NotReplicated;

/// Compiled exclusions of one replicated directory.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    paths: Vec<Vec<u8>>,
    exclude: Vec<Regex>,
    only: Vec<Regex>,
}

impl Filter {
    /// Compiles the exclusions (a bad expression is a configuration error).
    pub(crate) fn new(rules: &[NotReplicated]) -> Result<Self, String> {
        let mut f = Self::default();
        for r in rules {
            match r {
                NotReplicated::Path(p) => f.paths.push(p.trim_matches('/').as_bytes().to_vec()),
                NotReplicated::Regex { pattern, only } => {
                    let re = Regex::new(pattern).map_err(|e| format!("notreplicated regexpath {pattern:?}: {e}"))?;
                    if *only {
                        f.only.push(re);
                    } else {
                        f.exclude.push(re);
                    }
                }
            }
        }
        Ok(f)
    }

    /// `path` (relative) stays local.
    pub(crate) fn excluded(&self, path: &[u8]) -> bool {
        if path.is_empty() {
            return false;
        }
        let under = |p: &Vec<u8>| path == p.as_slice() || (path.starts_with(p) && path.get(p.len()) == Some(&b'/'));
        self.paths.iter().any(under) || self.exclude.iter().any(|r| r.is_match(path))
    }

    /// Has `!` (replicate-only) expressions.
    pub(crate) fn has_only(&self) -> bool {
        !self.only.is_empty()
    }

    /// Like [`Filter::excluded`], knowing whether `path` is a directory.
    pub(crate) fn excluded_entry(&self, path: &[u8], is_dir: bool) -> bool {
        self.excluded(path) || (!is_dir && !self.only.is_empty() && !self.only.iter().any(|r| r.is_match(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_exclude_their_subtree_and_regexes_match_relative_paths() {
        let f = Filter::new(&[NotReplicated::Path("tmp".into()), NotReplicated::Regex { pattern: r"\.log$".into(), only: false }]).unwrap();
        assert!(f.excluded(b"tmp") && f.excluded(b"tmp/a") && !f.excluded(b"tmpx/a"));
        assert!(f.excluded(b"a/b.log") && !f.excluded(b"a/b.logs"));
        let only = Filter::new(&[NotReplicated::Regex { pattern: r"\.db$".into(), only: true }]).unwrap();
        assert!(only.excluded_entry(b"a/x.txt", false) && !only.excluded_entry(b"a/x.db", false) && !only.excluded_entry(b"a", true));
    }
}
