//! Embeds `migrations/*.sql` (repo root) into the store at compile time.
//!
//! Cargo does not notice new files in a directory unless told, so the directory itself is a
//! `rerun-if-changed` input: adding `0002_x.sql` rebuilds the store.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let dir = manifest.join("../../migrations").canonicalize()?;
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files: Vec<(u32, String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        println!("cargo:rerun-if-changed={}", path.display());
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        let (number, title) = stem
            .split_once('_')
            .ok_or_else(|| format!("migration {name} must be named NNNN_title.sql"))?;
        let version: u32 = number
            .parse()
            .map_err(|_| format!("migration {name} must start with a number"))?;
        files.push((version, title.to_owned(), path));
    }
    files.sort_by_key(|f| f.0);
    // Numbers must be unique and increasing. A gap is allowed: parallel branches reserve
    // numbers ahead of their merge (a database records each applied version, so one merged
    // into the gap later is still applied).
    for pair in files.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(format!(
                "two migrations are numbered {}: {} and {}",
                pair[0].0,
                pair[0].2.display(),
                pair[1].2.display()
            )
            .into());
        }
    }
    if files.first().is_some_and(|f| f.0 != 1) {
        return Err("migrations must start at 0001".into());
    }

    let mut out = String::from("pub(crate) const MIGRATIONS: &[Migration] = &[\n");
    for (version, title, path) in &files {
        writeln!(
            out,
            "    Migration {{ version: {version}, name: {title:?}, sql: include_str!({:?}) }},",
            path.display().to_string()
        )?;
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("migrations.rs"), out)?;
    Ok(())
}
