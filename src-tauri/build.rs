//! Build script of the desktop shell. Only the `desktop` build links Tauri, so only it runs
//! `tauri-build` (which reads `tauri.conf.json`, checks the icons and compiles the capabilities);
//! the plain build must not need any of that, nor WebKitGTK.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "desktop")]
    {
        // Capabilities live beside the shell's sources instead of in a root `capabilities/`.
        let attributes = tauri_build::Attributes::new()
            .capabilities_path_pattern("src-tauri/capabilities/*.json");
        tauri_build::try_build(attributes)?;
    }
    Ok(())
}
