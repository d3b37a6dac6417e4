//! What the `safekit` binary has beyond the library: the demo cluster in
//! network namespaces (`safekit demo`, `safekit demo-bench`), which the
//! binary's privileged tests also use as their harness. It is a binary
//! concern (bridges, namespaces, child processes), so it lives here, not in
//! `safekit-core`.

pub mod demo;
pub mod demo_keep;
