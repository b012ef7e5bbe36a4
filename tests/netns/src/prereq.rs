//! What the harness needs from the machine: root, `ip`, `nft`, `ping`, and a built `weft`.

use std::env;
use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// Programs the harness runs, with the Debian package that ships each.
const TOOLS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("ping", "iputils-ping"),
];

/// Fails with a clear message unless we are root and every tool is installed.
pub(crate) fn check() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(HarnessError::NotRoot);
    }
    for (tool, package) in TOOLS {
        if find_on_path(tool).is_none() {
            return Err(HarnessError::MissingTool { tool, package });
        }
    }
    Ok(())
}

/// The first executable file called `name` in `$PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Where the `weft` binary is: `$WEFT_BIN`, else `debug/weft` in `$CARGO_TARGET_DIR`, else in the
/// workspace's `target/`. Fails if nothing is there.
pub fn weft_binary() -> Result<PathBuf> {
    let path = weft_binary_path(
        env::var_os("WEFT_BIN").map(PathBuf::from),
        env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        &workspace_root(),
    );
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingWeft { path })
    }
}

/// The workspace root: two levels above this crate's manifest (`tests/netns/`).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The lookup rule of [`weft_binary`], without the environment.
fn weft_binary_path(
    weft_bin: Option<PathBuf>,
    target_dir: Option<PathBuf>,
    workspace: &Path,
) -> PathBuf {
    if let Some(bin) = weft_bin {
        return bin;
    }
    let target = match target_dir {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("debug").join("weft")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weft_bin_wins() {
        let path = weft_binary_path(
            Some("/opt/weft".into()),
            Some("/t".into()),
            Path::new("/ws"),
        );
        assert_eq!(path, Path::new("/opt/weft"));
    }

    #[test]
    fn target_dir_absolute_and_relative() {
        assert_eq!(
            weft_binary_path(None, Some("/t".into()), Path::new("/ws")),
            Path::new("/t/debug/weft")
        );
        assert_eq!(
            weft_binary_path(None, Some("tgt".into()), Path::new("/ws")),
            Path::new("/ws/tgt/debug/weft")
        );
    }

    #[test]
    fn default_is_workspace_target() {
        assert_eq!(
            weft_binary_path(None, None, Path::new("/ws")),
            Path::new("/ws/target/debug/weft")
        );
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests/netns/Cargo.toml").is_file());
    }
}
