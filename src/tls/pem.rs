//! Reading the PEM of a certificate chain or a private key, with errors that
//! say what is wrong in words an operator can act on: a file cut short (a
//! renewal caught half-written) names the `-----END …-----` line it lacks, an
//! encrypted key says so, a file that cannot be opened is not called a file
//! without a key. Callers name the file; nothing here puts key bytes in a
//! message. A UTF-8 byte order mark before the first line (a file saved by
//! a Windows editor) is passed over: it hid the first PEM block, so a chain
//! lost its leaf and the key was said not to fit (TLS review, stop 66).

use rustls::pki_types::pem::{Error, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates in `pem`, in file order; `Err` says why the PEM is unusable.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = without_bom(pem);
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| explain(&e))
}

/// The first private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    let pem = without_bom(pem);
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        Error::NoItemsFound if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
            "the private key is encrypted (passphrase-protected); give an unencrypted one \
             (`openssl pkey -in KEY -out KEY.plain`)"
                .to_string()
        }
        Error::NoItemsFound => {
            "no private key in it (PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)".to_string()
        }
        e => explain(&e),
    })
}

fn without_bom(pem: &[u8]) -> &[u8] {
    pem.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(pem)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A PEM error in words. The label of a section is shown only when it is
/// one (capitals, digits, spaces): a key pasted into one line, its line
/// breaks lost or written as `\n`, makes the parser take the whole key for
/// the label or the malformed line, and that is never quoted.
fn explain(e: &Error) -> String {
    const ONE_LINE: &str = "a `-----BEGIN` line is malformed (not `-----BEGIN LABEL-----` alone on its line: were \
                            the file's line breaks lost, or written as `\\n`?); the line is not shown, it may hold \
                            a key";
    match e {
        Error::MissingSectionEnd { end_marker } if is_label(end_marker) => format!(
            "it is cut short: a `{0}` section has no `-----END {0}-----` line (a file still being written?)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::MissingSectionEnd { .. } | Error::IllegalSectionStart { .. } => ONE_LINE.to_string(),
        Error::Base64Decode(why) => format!("damaged PEM (base64: {why})"),
        other => other.to_string(),
    }
}

/// Whether `label` is what a PEM section label looks like (`PRIVATE KEY`,
/// `CERTIFICATE`, `EC PRIVATE KEY`).
fn is_label(label: &[u8]) -> bool {
    (1..=40).contains(&label.len())
        && label
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n";

    #[test]
    fn a_byte_order_mark_before_the_first_block_hides_nothing() {
        let (cert, key) = crate::tls::test_cert::self_signed("a.example");
        let (leaf, ca) = crate::tls::test_cert::self_signed("b.example");
        let bom = |pem: String| [b"\xEF\xBB\xBF".as_slice(), pem.as_bytes()].concat();
        let chain = certificates(&bom(cert.pem() + &leaf.pem())).unwrap();
        assert_eq!(chain.len(), 2, "the first block was passed over");
        assert_eq!(chain[0].as_ref(), cert.der().as_ref());
        assert!(private_key(&bom(key.serialize_pem())).is_ok());
        drop(ca);
    }

    #[test]
    fn a_half_written_key_is_said_to_be_cut_short() {
        let why = private_key(KEY.as_bytes()).unwrap_err();
        assert!(
            why.contains("cut short") && why.contains("-----END PRIVATE KEY-----"),
            "{why}"
        );
    }

    /// A key pasted into one line (its line breaks written as `\n`, or
    /// turned into spaces, as an environment variable or a secret store may
    /// leave it): the error says so without quoting the line, which holds
    /// the whole key.
    #[test]
    fn a_key_on_one_line_is_refused_without_quoting_it() {
        const BODY: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        for pem in [
            format!("-----BEGIN PRIVATE KEY-----\\n{BODY}\\n-----END PRIVATE KEY-----\\n"),
            format!("-----BEGIN PRIVATE KEY----- {BODY} -----END PRIVATE KEY-----"),
            format!("-----BEGIN PRIVATE KEY----- {BODY} -----END PRIVATE KEY-----\n"),
        ] {
            let why = private_key(pem.as_bytes()).unwrap_err();
            assert!(!why.contains("MIGHAgEA"), "the key is quoted: {why}");
            assert!(why.contains("line breaks"), "{pem}: {why}");
            let why = certificates(pem.as_bytes()).unwrap_err();
            assert!(!why.contains("MIGHAgEA"), "the key is quoted: {why}");
        }
    }

    #[test]
    fn an_encrypted_key_is_named_as_such() {
        let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let why = private_key(pem.as_bytes()).unwrap_err();
        assert!(why.contains("encrypted"), "{why}");
    }
}
