//! Small filesystems for tests that fill a disk (a tmpfs) or stall one (a frozen loop-mounted ext4); both need root, as in CI.

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
    let tmpfs = Tmpfs::mount(&mnt, "48m")?;
    let cfg = TestConfig::new(dir)
        .store_path(&mnt.join("data"))
        .store_cache(1 << 20)
        .min_free(8 << 20)
        .subscriber(Subscriber::new("s", DOWN).retry([secs(3600)]));
    Some((tmpfs, mnt, cfg))
}

/// A test that needs a mount says it skipped — unless `.ci/test` found
/// that this machine can mount (`HOOKRELAY_TEST_MOUNTS=1`): then it fails,
/// rather than pass without having run.
fn skipped(why: &str) {
    if std::env::var_os("HOOKRELAY_TEST_MOUNTS").is_some_and(|v| v == "1") {
        panic!("{why}, though .ci/test could mount here (HOOKRELAY_TEST_MOUNTS=1)");
    }
    eprintln!("SKIPPED: {why}");
}

/// A small tmpfs mounted for the test (needs root), unmounted on drop.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mount one of `size` at `path`; `None`, the test saying it skipped,
    /// where no tmpfs can be mounted.
    pub fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skipped("cannot mount a tmpfs here (not root?)");
        }
        ok.then(|| Tmpfs(path.to_path_buf()))
    }

    /// Write `file` so that `kib` KiB stay free (none written if fewer
    /// are); its length.
    pub fn fill_leaving(&self, file: &Path, kib: u64) -> usize {
        let len = self.free_kib().saturating_sub(kib) as usize * 1024;
        std::fs::write(file, vec![0u8; len]).unwrap();
        len
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

/// An ext4 filesystem in a file, loop-mounted (needs root, as in CI): one
/// that can be frozen (`fsfreeze`), so that every write to it waits, as on
/// a stalled disk. Thawed and unmounted when dropped.
pub struct Frozen {
    path: PathBuf,
    frozen: std::sync::atomic::AtomicBool,
}

impl Frozen {
    /// A `size_mib` MiB filesystem in `image`, mounted at `path`; `None`
    /// (the test says it skipped) where that cannot be done.
    pub fn mount(image: &Path, path: &Path, size_mib: u64) -> Option<Frozen> {
        std::fs::create_dir_all(path).unwrap();
        std::fs::File::create(image).ok()?.set_len(size_mib << 20).ok()?;
        let run =
            |cmd: &str, args: &[&std::ffi::OsStr]| Command::new(cmd).args(args).status().is_ok_and(|s| s.success());
        if !run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), image.as_os_str()]) {
            skipped("cannot make a filesystem here (no mkfs.ext4?)");
            return None;
        }
        Self::mount_existing(image, path)
    }

    /// The filesystem already in `image` (a copy of another's disk: ext4
    /// replays its journal), loop-mounted at `path`; `None` (the test says it
    /// skipped) where that cannot be done.
    pub fn mount_existing(image: &Path, path: &Path) -> Option<Frozen> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-o".as_ref(), "loop".as_ref(), image.as_os_str(), path.as_os_str()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skipped("cannot mount a loop filesystem here (not root? no loop devices?)");
            return None;
        }
        Some(Frozen {
            path: path.to_path_buf(),
            frozen: false.into(),
        })
    }

    /// Freeze it: writes wait until [`Self::thaw`]. False where freezing is
    /// not supported (the test says it skipped).
    pub fn freeze(&self) -> bool {
        // Thawed in 60 s whatever happens to this process (a test killed
        // while it is frozen would leave every writer to it hanging).
        let _ = Command::new("sh")
            .arg("-c")
            .arg(r#"(sleep 60; fsfreeze -u "$0") >/dev/null 2>&1 &"#)
            .arg(&self.path)
            .status();
        let ok = Command::new("fsfreeze")
            .arg("-f")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        self.frozen.store(ok, std::sync::atomic::Ordering::SeqCst);
        if !ok {
            skipped("cannot freeze a filesystem here");
        }
        ok
    }

    pub fn thaw(&self) {
        if self.frozen.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.path).status();
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Take every inode of the filesystem holding `dir` (made here) but `left`,
/// with empty files in `dir`: a disk out of inodes with bytes to spare.
/// What [`InodesTaken::give_back`] removes.
pub struct InodesTaken {
    dir: PathBuf,
    files: usize,
}

impl InodesTaken {
    pub fn leaving(dir: &Path, left: usize) -> InodesTaken {
        std::fs::create_dir(dir).unwrap();
        let mut n = 0;
        while std::fs::write(dir.join(n.to_string()), b"").is_ok() {
            n += 1;
        }
        for i in n - left..n {
            std::fs::remove_file(dir.join(i.to_string())).unwrap();
        }
        InodesTaken {
            dir: dir.to_path_buf(),
            files: n - left,
        }
    }

    pub fn give_back(self) {
        for i in 0..self.files {
            std::fs::remove_file(self.dir.join(i.to_string())).unwrap();
        }
    }
}
