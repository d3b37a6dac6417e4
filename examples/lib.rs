//! Examples: see the `[[example]]` entries.
