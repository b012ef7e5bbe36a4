//! A minimal container image for the runtime tests (podman, dockerd).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::router::output_text;

/// Builds, under `dir`, a tarball of a rootfs holding busybox-static and its applet links: the
/// container image the podman and dockerd tests import.
#[track_caller]
pub fn busybox_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).expect("rootfs");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static installed");
    let list = Command::new(bin.join("busybox"))
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "{}", output_text(&list));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
    }
    let tar = dir.join("busybox.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("tar");
    assert!(out.status.success(), "{}", output_text(&out));
    tar
}
