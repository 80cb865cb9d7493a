//! A small tmpfs for tests that fill a disk (needs root, as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::TestConfig;
use super::route::Subscriber;
use super::{secs, DOWN};

/// A relay's config with its store on a 48 MiB tmpfs at `dir/small`, an
/// 8 MiB `store.min_free` and one subscriber that is down (its events stay):
/// a few large callbacks bring it near the floor. With the mount and its
/// path; `None` (the test says it skipped) where no tmpfs can be mounted.
pub fn store_near_the_floor(dir: &Path) -> Option<(Tmpfs, PathBuf, TestConfig)> {
    let mnt = dir.join("small");
    let Some(tmpfs) = Tmpfs::mount(&mnt, "48m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return None;
    };
    let cfg = TestConfig::new(dir)
        .store_path(&mnt.join("data"))
        .store_cache(1 << 20)
        .min_free(8 << 20)
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]));
    Some((tmpfs, mnt, cfg))
}

/// A small tmpfs mounted for the test (needs root), unmounted on drop.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    pub fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(path.to_path_buf()))
    }

    pub fn free_kib(&self) -> u64 {
        let out = Command::new("df")
            .args(["-k", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
