//! Which config file a command run from a shell reads, and where its
//! credentials are: with no `--config` (nor `HOOKRELAY_CONFIG`) and no
//! `config.toml` in the working directory, the packaged service's
//! `/etc/hookrelay/config.toml`; with `CREDENTIALS_DIRECTORY` unset, the
//! `secrets/` beside the config file (what the unit's `LoadCredential=`
//! lines load). So `sudo hookrelay status` works from any directory on a
//! packaged install. Not for `run`: the daemon reads the file it is told
//! and the credentials its unit gives it.

use std::path::{Path, PathBuf};

/// The .deb's config file.
pub(super) const PACKAGED_CONFIG: &str = "/etc/hookrelay/config.toml";

/// The config file a command from a shell reads: `config` when it was
/// named or exists, else `packaged` when that exists.
pub(super) fn config_file(config: &Path, given: bool, packaged: &Path) -> PathBuf {
    // A link here that leads nowhere is this config (its error names it),
    // not a reason to read another.
    if given || config.symlink_metadata().is_ok() || !packaged.is_file() {
        return config.to_path_buf();
    }
    packaged.to_path_buf()
}

/// The `secrets/` directory beside `config`, if there is one.
pub(super) fn secrets_beside(config: &Path) -> Option<PathBuf> {
    let dir = config.parent().unwrap_or(Path::new("")).join("secrets");
    dir.is_dir().then_some(dir)
}

/// Both, for the command about to run (not `run`).
pub(super) fn settle(cli: &mut super::Cli) {
    cli.config = config_file(&cli.config, cli.config_given, Path::new(PACKAGED_CONFIG));
    // Used only while CREDENTIALS_DIRECTORY is unset or empty (`secret::credentials_dir`).
    if let Some(dir) = secrets_beside(&cli.config) {
        crate::config::secret::read_credentials_beside(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_config_is_read_only_when_none_is_named_or_here() {
        let tmp = tempfile::tempdir().unwrap();
        let packaged = tmp.path().join("etc/config.toml");
        let here = tmp.path().join("config.toml");
        // No packaged config: the default, whose absence the command reports.
        assert_eq!(config_file(&here, false, &packaged), here);
        std::fs::create_dir_all(packaged.parent().unwrap()).unwrap();
        std::fs::write(&packaged, "").unwrap();
        assert_eq!(config_file(&here, false, &packaged), packaged);
        // A file named (--config, HOOKRELAY_CONFIG) is read or reported missing.
        assert_eq!(config_file(&here, true, &packaged), here);
        // A link here that leads nowhere is this config, reported broken.
        std::os::unix::fs::symlink(tmp.path().join("gone.toml"), &here).unwrap();
        assert_eq!(config_file(&here, false, &packaged), here);
        std::fs::remove_file(&here).unwrap();
        std::fs::write(&here, "").unwrap();
        assert_eq!(config_file(&here, false, &packaged), here);
    }

    #[test]
    fn secrets_are_the_directory_beside_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.toml");
        assert_eq!(secrets_beside(&config), None);
        std::fs::write(tmp.path().join("secrets"), "").unwrap();
        assert_eq!(secrets_beside(&config), None, "a file is not the directory");
        std::fs::remove_file(tmp.path().join("secrets")).unwrap();
        std::fs::create_dir(tmp.path().join("secrets")).unwrap();
        assert_eq!(secrets_beside(&config), Some(tmp.path().join("secrets")));
    }
}
