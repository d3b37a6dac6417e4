//! Table-driven transition tests.
