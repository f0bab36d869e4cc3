use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::*;

const DAY: Duration = Duration::from_secs(86_400);

fn ca() -> Authority {
    Authority::generate("Porchlight test CA", SystemTime::now(), 3650 * DAY).unwrap()
}

fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/setup.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_verifies_a_server_certificate_and_reads_its_names() {
    let ca = ca();
    let server = ca
        .issue_server(
            "porchlight.local",
            &[
                San::Dns("localhost".into()),
                San::Dns("porchlight.local".into()),
                San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            SystemTime::now(),
            90 * DAY,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslserver",
            "server.pem",
        ],
        dir.path(),
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        &["x509", "-in", "server.pem", "-noout", "-text"],
        dir.path(),
    );
    assert!(ok, "{text}");
    for expected in [
        "DNS:localhost",
        "DNS:porchlight.local",
        "IP Address:127.0.0.1",
        "ecdsa-with-SHA256",
        "TLS Web Server Authentication",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    let (ok, text) = openssl(&["x509", "-in", "ca.pem", "-noout", "-text"], dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    // The server key is the certificate's key.
    std::fs::write(dir.path().join("server.key"), server.key_pem.as_bytes()).unwrap();
    let (_, from_cert) = openssl(
        &["x509", "-in", "server.pem", "-noout", "-pubkey"],
        dir.path(),
    );
    let (_, from_key) = openssl(&["pkey", "-in", "server.key", "-pubout"], dir.path());
    assert_eq!(from_cert, from_key);
    // Another CA's certificate does not verify against ours.
    let other = Authority::generate("another CA", SystemTime::now(), 365 * DAY).unwrap();
    std::fs::write(dir.path().join("other.pem"), other.cert_pem()).unwrap();
    let (ok, _) = openssl(
        &["verify", "-CAfile", "other.pem", "server.pem"],
        dir.path(),
    );
    assert!(!ok);
}

#[test]
fn client_certificates_have_unique_subjects_and_serials_and_verify_for_client_auth() {
    let ca = ca();
    let who = ClientSubject {
        user: "alice".into(),
        device: "phone".into(),
    };
    let a = ca.issue_client(&who, SystemTime::now(), 365 * DAY).unwrap();
    let b = ca.issue_client(&who, SystemTime::now(), 365 * DAY).unwrap();
    assert_ne!(a.serial, b.serial);
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(a.common_name, "alice/phone");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("a.pem"), &a.cert_pem).unwrap();
    std::fs::write(dir.path().join("b.pem"), &b.cert_pem).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "sslclient",
            "a.pem",
        ],
        dir.path(),
    );
    assert!(ok, "{text}");
    let subject = |file: &str| {
        openssl(
            &["x509", "-in", file, "-noout", "-subject", "-serial"],
            dir.path(),
        )
        .1
    };
    let (sa, sb) = (subject("a.pem"), subject("b.pem"));
    assert!(
        sa.contains("CN = alice/phone") || sa.contains("CN=alice/phone"),
        "{sa}"
    );
    assert_ne!(sa.lines().next(), sb.lines().next(), "subjects differ");
    assert!(
        sa.to_lowercase().contains(&a.serial.to_lowercase()),
        "openssl's serial is ours: {sa} vs {}",
        a.serial
    );
    // Never beyond the CA's own expiry.
    let short = Authority::generate("short CA", SystemTime::now(), 10 * DAY).unwrap();
    let c = short
        .issue_client(&who, SystemTime::now(), 365 * DAY)
        .unwrap();
    assert!(c.not_after <= short.not_after());
    assert!(matches!(
        ca.issue_client(
            &ClientSubject {
                user: "a/b".into(),
                device: "x".into()
            },
            SystemTime::now(),
            DAY
        ),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn a_sealed_ca_opens_with_its_master_key_and_signs_the_same() {
    let ca = ca();
    let master = MasterKey::generate().unwrap();
    let sealed = ca.sealed_key(&master).unwrap();
    let text = String::from_utf8_lossy(&sealed);
    assert!(!text.contains("PRIVATE KEY"));
    let again = Authority::open(ca.cert_pem(), &sealed, &master).unwrap();
    assert_eq!(again.fingerprint(), ca.fingerprint());
    // The reopened CA issues certificates that verify against the original certificate.
    let issued = again
        .issue_server("x", &[San::Dns("localhost".into())], SystemTime::now(), DAY)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("s.pem"), &issued.cert_pem).unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", "ca.pem", "s.pem"], dir.path());
    assert!(ok, "{out}");
    // A sealed key does not open beside another certificate, nor with another master key.
    let other = Authority::generate("other", SystemTime::now(), DAY).unwrap();
    assert!(matches!(
        Authority::open(other.cert_pem(), &sealed, &master),
        Err(Error::Seal(SealError::WrongKey))
    ));
    assert!(matches!(
        Authority::open(ca.cert_pem(), &sealed, &MasterKey::generate().unwrap()),
        Err(Error::Seal(SealError::WrongKey))
    ));
}

#[test]
fn import_takes_an_openssl_made_ca_and_refuses_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Home CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir.path(),
    );
    assert!(ok, "{out}");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let ca = Authority::import(&read("ca.pem"), &read("ca.key"), SystemTime::now()).unwrap();
    assert_eq!(ca.common_name(), "Home CA");
    let issued = ca
        .issue_server("h", &[San::Dns("localhost".into())], SystemTime::now(), DAY)
        .unwrap();
    std::fs::write(dir.path().join("s.pem"), &issued.cert_pem).unwrap();
    let (ok, out) = openssl(&["verify", "-CAfile", "ca.pem", "s.pem"], dir.path());
    assert!(ok, "{out}");

    // Not a CA: a leaf certificate with its own key.
    let (ok, out) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.pem",
            "-days",
            "30",
            "-subj",
            "/CN=leaf",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
        dir.path(),
    );
    assert!(ok, "{out}");
    assert!(matches!(
        Authority::import(&read("leaf.pem"), &read("leaf.key"), SystemTime::now()),
        Err(Error::NotACa)
    ));
    // The CA certificate with someone else's key.
    assert!(matches!(
        Authority::import(&read("ca.pem"), &read("leaf.key"), SystemTime::now()),
        Err(Error::KeyMismatch)
    ));
    // Expired at the time of import.
    assert!(matches!(
        Authority::import(
            &read("ca.pem"),
            &read("ca.key"),
            SystemTime::now() + 60 * DAY
        ),
        Err(Error::OutsideValidity)
    ));
    // Garbage.
    assert!(matches!(
        Authority::import("not a pem", &read("ca.key"), SystemTime::now()),
        Err(Error::BadCertificate(_))
    ));
    assert!(matches!(
        Authority::import(
            &read("ca.pem"),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            SystemTime::now()
        ),
        Err(Error::BadKey(_))
    ));
}

#[test]
fn a_legacy_pkcs12_opens_in_openssl_legacy_mode_with_its_password_only() {
    let ca = ca();
    let who = ClientSubject {
        user: "alice".into(),
        device: "phone".into(),
    };
    let issued = ca.issue_client(&who, SystemTime::now(), 365 * DAY).unwrap();
    let password = random_password(20).unwrap();
    assert_eq!(password.len(), 20);
    assert_ne!(*password, *random_password(20).unwrap());
    let p12 = issued
        .to_legacy_pkcs12(ca.cert_der(), &password, "alice/phone")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.p12"), &p12).unwrap();
    let pass = format!("pass:{}", &*password);
    let (ok, text) = openssl(
        &[
            "pkcs12", "-info", "-legacy", "-nodes", "-passin", &pass, "-in", "f.p12",
        ],
        dir.path(),
    );
    assert!(ok, "{text}");
    assert!(text.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{text}");
    assert!(text.contains("pbeWithSHA1And40BitRC2-CBC"), "{text}");
    assert!(text.contains("MAC: sha1"), "{text}");
    assert!(
        text.contains("CN=alice/phone") || text.contains("CN = alice/phone"),
        "{text}"
    );
    assert!(text.contains("BEGIN PRIVATE KEY"), "{text}");
    let (ok, _) = openssl(
        &[
            "pkcs12",
            "-info",
            "-legacy",
            "-nodes",
            "-passin",
            "pass:wrong",
            "-in",
            "f.p12",
        ],
        dir.path(),
    );
    assert!(!ok, "a wrong password opens the file");
}
