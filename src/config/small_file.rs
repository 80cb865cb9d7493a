//! Reading a file the configuration names (the config itself, a secret, a
//! certificate, a CA): up to a bound, so that a device such as `/dev/zero`
//! cannot stream into memory for ever. A FIFO is read as `cat` would (a
//! config given as `-c <(envsubst < t.toml)`, a secret's `file`); one with
//! no writer blocks its reader, which a reload bounds in time
//! ([`crate::Handle::reload`]). Certificates, keys and CA files never get
//! here as FIFOs: the validator wants regular files for them
//! (`Validator::existing_file`).

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The largest config file (the shipped one is ~9 KiB).
pub const CONFIG_MAX: u64 = 4 << 20;
/// The largest secret file (a token, a signing secret, a key).
pub const SECRET_MAX: u64 = 1 << 20;
/// The largest PEM file (a certificate chain, a key, a CA bundle: the
/// system's whole bundle is ~200 KiB).
pub const PEM_MAX: u64 = 16 << 20;

/// The file's bytes, when it holds at most `max`; otherwise an error that
/// says so (or that it is a directory).
pub fn read(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let _reading = super::blocked_reads::Reading::of(path)?;
    if std::fs::metadata(path)?.is_dir() {
        return Err(Error::new(ErrorKind::InvalidInput, "it is a directory, not a file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::InvalidData,
            match (max >> 20, max >> 10) {
                (0, 0) => format!("it is larger than {max} bytes, more than such a file holds"),
                (0, kib) => format!("it is larger than {kib} KiB, more than such a file holds"),
                (mib, _) => format!("it is larger than {mib} MiB, more than such a file holds"),
            },
        ));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read(path, max)?).map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_bound_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read(&f, 5).unwrap(), b"12345");
        assert!(read(&f, 4).unwrap_err().to_string().contains("larger than 4 bytes"));
        assert!(read(dir.path(), 5).unwrap_err().to_string().contains("directory"));
        // A device that never ends: cut at the bound.
        let zero = read(Path::new("/dev/zero"), 5 << 10).unwrap_err().to_string();
        assert!(zero.contains("larger than 5 KiB"), "{zero}");
        std::fs::write(&f, b"\xff").unwrap();
        assert!(read_text(&f, 5).unwrap_err().to_string().contains("UTF-8"));
    }
}
