//! The module templates the binary carries (packaged from `modules/` by
//! build.rs), written into `SAFE/Application_Modules/generic/` where the
//! console and `safekit module install` find them. A file already there is
//! never overwritten: it may be the user's own.

use safekit_core::layout::Layout;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// Writes every template missing from `SAFE/Application_Modules/generic/`;
/// the names written.
pub(crate) fn write_missing(layout: &Layout) -> Result<Vec<String>, String> {
    let dir = layout.safe.join("Application_Modules").join("generic");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (name, bytes) in TEMPLATES {
        let file = dir.join(format!("{name}.safe"));
        if file.exists() {
            continue;
        }
        let tmp = dir.join(format!(".{name}.safe.new"));
        std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &file)).map_err(|e| format!("{}: {e}", file.display()))?;
        written.push((*name).to_string());
    }
    Ok(written)
}
