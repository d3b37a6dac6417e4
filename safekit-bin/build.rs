//! Packages each module template of `modules/` (a directory with
//! `conf/userconfig.xml`) as a `.safe` (zip) into OUT_DIR, and lists them
//! for `include_bytes!`: the binary carries its templates and writes them
//! into `SAFE/Application_Modules/generic/` (src/templates.rs).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Files under `dir`, relative, sorted (a stable archive for a stable tree).
fn files(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("template directory").flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let name = format!("{rel}{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            files(&e.path(), &format!("{name}/"), out);
        } else {
            out.push((name, e.path()));
        }
    }
}

fn main() {
    // Read when the script runs (not baked in when it is compiled): a build
    // script binary reused from another checkout must not read that one.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("../modules");
    println!("cargo:rerun-if-changed={}", root.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut list = String::from("/// The module templates: (name, .safe bytes).\npub(crate) const TEMPLATES: &[(&str, &[u8])] = &[\n");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("modules/").flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs.into_iter().filter(|d| d.join("conf/userconfig.xml").is_file()) {
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let mut entries = Vec::new();
        files(&dir, "", &mut entries);
        let file = out.join(format!("{name}.safe"));
        let mut z = zip::ZipWriter::new(std::fs::File::create(&file).expect("create .safe"));
        for (rel, path) in entries {
            // Scripts executable, the rest readable; a fixed date keeps the archive stable.
            let mode = if rel.starts_with("bin/") { 0o755 } else { 0o644 };
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(mode)
                .last_modified_time(zip::DateTime::default());
            z.start_file(rel, opts).expect("zip entry");
            z.write_all(&std::fs::read(&path).expect("template file")).expect("zip write");
        }
        z.finish().expect("zip finish");
        list.push_str(&format!("    ({name:?}, include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}.safe\"))),\n"));
    }
    list.push_str("];\n");
    std::fs::write(out.join("templates.rs"), list).expect("templates.rs");
}
