//! A Docker image made here, for tests that run heal's programs as
//! containers: no registry is reachable, so nothing is pulled. The image is
//! a root file system holding one binary and the shared libraries `ldd`
//! says it links, brought in by `docker import` (no base image, no shell).
//!
//! Its tag is the repository and a hash of the binary: an image already
//! made from the same binary is reused; older ones of the repository are
//! removed when a new one is made.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// Runs `argv`, returning its stdout; failed with its stderr otherwise.
fn run(argv: &[&str]) -> Result<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| Error::failed(format!("running {}: {e}", argv[0])))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image of `binary` in repository `repo` (`repo:HASH`), its
/// entrypoint `/NAME` (the binary's file name), with `tools` (programs an
/// `exec` action runs, such as `/usr/bin/mktemp`) at their own paths; made
/// when missing.
///
/// # Errors
///
/// As [`import`].
pub fn of_binary(binary: &Path, tools: &[&Path], repo: &str) -> Result<String> {
    // FNV-1a of the binary and the tools.
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for file in std::iter::once(binary).chain(tools.iter().copied()) {
        let bytes = std::fs::read(file)
            .map_err(|e| Error::failed(format!("reading {}: {e}", file.display())))?;
        hash = bytes.iter().fold(hash, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    }
    let tag = format!("{repo}:{hash:016x}");
    let present = Command::new("docker")
        .args(["image", "inspect", &tag])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(tag);
    }
    for image in run(&[
        "docker",
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        repo,
    ])?
    .lines()
    {
        let _ = Command::new("docker").args(["rmi", image]).output();
    }
    import_with(binary, tools, &tag, &[])?;
    Ok(tag)
}

/// Imports `binary` and the libraries `ldd` lists as image `tag`, its
/// entrypoint `/NAME` (the binary's file name), with `changes` (Dockerfile
/// instructions, such as a `HEALTHCHECK`) applied too.
///
/// # Errors
///
/// Failed when the binary cannot be read, or `ldd`, `tar` or `docker
/// import` fails (no engine).
pub fn import(binary: &Path, tag: &str, changes: &[&str]) -> Result<()> {
    import_with(binary, &[], tag, changes)
}

/// [`import`] with `tools` at their own paths, and what they link.
fn import_with(binary: &Path, tools: &[&Path], tag: &str, changes: &[&str]) -> Result<()> {
    let name = binary
        .file_name()
        .ok_or_else(|| Error::failed(format!("{} has no file name", binary.display())))?
        .to_string_lossy()
        .into_owned();
    let root = crate::orchestrate::TempDir::new("heal-image")?;
    std::fs::copy(binary, root.path().join(&name))
        .map_err(|e| Error::failed(format!("copying {}: {e}", binary.display())))?;
    let mut files: Vec<String> = Vec::new();
    for program in std::iter::once(binary).chain(tools.iter().copied()) {
        let ldd = run(&["ldd", &program.to_string_lossy()])?;
        files.extend(
            ldd.split_whitespace()
                .filter(|w| w.starts_with('/'))
                .map(str::to_owned),
        );
    }
    files.extend(tools.iter().map(|t| t.to_string_lossy().into_owned()));
    for lib in files.iter().map(Path::new) {
        let to = root.path().join(lib.strip_prefix("/").unwrap_or(lib));
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::failed(format!("making {}: {e}", parent.display())))?;
        }
        std::fs::copy(lib, &to)
            .map_err(|e| Error::failed(format!("copying {}: {e}", lib.display())))?;
    }
    let tar = root.path().with_extension("tar");
    let (root_text, tar_text) = (root.path().to_string_lossy(), tar.to_string_lossy());
    run(&["tar", "-C", &root_text, "-cf", &tar_text, "."])?;
    let entrypoint = format!(r#"ENTRYPOINT ["/{name}"]"#);
    let mut argv = vec!["docker", "import", "--change", &entrypoint];
    for c in changes {
        argv.extend(["--change", c]);
    }
    argv.extend([tar_text.as_ref(), tag]);
    let imported = run(&argv);
    let _ = std::fs::remove_file(&tar);
    imported.map(|_| ())
}
