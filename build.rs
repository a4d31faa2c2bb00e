//! Embeds the files of `web/` into the binary (see src/http/assets.rs).

use std::{env, fs, path::Path};

fn main() {
    let web = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("web");
    println!("cargo:rerun-if-changed=web");
    let mut entries = Vec::new();
    if let Ok(dir) = fs::read_dir(&web) {
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_file() && !name.starts_with('.') {
                println!("cargo:rerun-if-changed={}", path.display());
                entries.push(format!(
                    "({name:?}, include_bytes!({:?}) as &[u8]),",
                    path.display().to_string()
                ));
            }
        }
    }
    entries.sort();
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    let code = format!(
        "pub static ASSETS: &[(&str, &[u8])] = &[\n{}\n];\n",
        entries.join("\n")
    );
    fs::write(out, code).expect("write assets.rs");
}
