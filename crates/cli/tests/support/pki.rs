//! A small public-key infrastructure for the TLS tests, made with the
//! `openssl` command line (full tier: `apt-get install openssl`): a test
//! CA, a server certificate for `localhost` and 127.0.0.1, client
//! certificates (one the CA signed, one from another CA, one expired), all
//! PEM files in one temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools;

/// The files, in a directory that lives as long as this value.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// The subject of the client certificate the CA signed.
pub const CLIENT_SUBJECT: &str = "CN=student-1,O=hftp tests";

impl Pki {
    pub fn new() -> Pki {
        let openssl = tools::require("openssl", "apt-get install openssl");
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str, subject: &str| {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ]);
        };
        ca("ca", "/CN=hftp test CA");
        ca("other-ca", "/CN=another CA");
        let leaf = |name: &str, subject: &str, issuer: &str, ext: &str| {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-days",
                "30",
                "-CA",
                &format!("{issuer}.pem"),
                "-CAkey",
                &format!("{issuer}.key"),
                "-set_serial",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ]);
        };
        leaf(
            "server",
            "/CN=localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        let client_ext = "extendedKeyUsage=clientAuth\n";
        leaf("client", "/O=hftp tests/CN=student-1", "ca", client_ext);
        leaf("stranger", "/CN=stranger", "other-ca", client_ext);
        // Expired: valid in 2000 only, signed by the test CA (`openssl ca`
        // is the tool that takes explicit dates).
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=expired",
            "-keyout",
            "expired.key",
            "-out",
            "expired.csr",
        ]);
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(
            dir.path().join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = none\n\
             x509_extensions = ext\n[any]\ncommonName = supplied\n\
             [ext]\nextendedKeyUsage = clientAuth\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("serial"), "03\n").unwrap();
        run(&[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            "ca.pem",
            "-keyfile",
            "ca.key",
            "-startdate",
            "20000101000000Z",
            "-enddate",
            "20010101000000Z",
            "-in",
            "expired.csr",
            "-out",
            "expired.pem",
            "-notext",
        ]);
        Pki { dir }
    }

    /// `NAME.pem` (a certificate) or `NAME.key`: `ca`, `other-ca`,
    /// `server`, `client`, `stranger`, `expired`.
    pub fn file(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        assert!(path.exists(), "no {name} in the test PKI");
        path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
