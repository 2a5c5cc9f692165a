//! Certificates for the TLS tests, made with openssl in a temporary folder: a CA that signs a
//! server certificate for localhost and 127.0.0.1 (not 127.0.0.2), another CA that signs nothing,
//! and whatever else a test asks the CA to issue.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// What a CA certificate needs to be one (rustls wants X.509 v3 extensions throughout).
const CA_EXTENSIONS: &str =
    "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";

/// A TLS server certificate for localhost and 127.0.0.1.
const SERVER_EXTENSIONS: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n";

/// The folder: `ca.{key,crt}`, `other_ca.{key,crt}` and `server.{key,csr,crt}` (signed by `ca`).
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let certs = Certs {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(certs.path("ca.ext"), CA_EXTENSIONS).unwrap();
        for ca in ["ca", "other_ca"] {
            certs.request(ca, &format!("dhctl test {ca}"));
            certs.openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{ca}.csr"),
                "-signkey",
                &format!("{ca}.key"),
                "-days",
                "2",
                "-extfile",
                "ca.ext",
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        certs.issue("server", "localhost", SERVER_EXTENSIONS);
        certs
    }

    /// `<name>.key` and `<name>.crt` for the subject CN=`cn`, signed by `ca` with the X.509 v3
    /// `extensions` (openssl's extension file syntax).
    pub fn issue(&self, name: &str, cn: &str, extensions: &str) {
        self.request(name, cn);
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), extensions).unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// A new RSA key `<name>.key` and a signing request `<name>.csr` for CN=`cn`.
    fn request(&self, name: &str, cn: &str) {
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
    }

    /// Runs openssl in the folder; panics with its stderr when it fails.
    pub fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl (Debian package openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}
