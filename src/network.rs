//! How the process reaches GitHub, the intake and AWS: through the proxy the environment names
//! (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, read by both HTTP clients with the same matcher,
//! hyper-util's), trusting the system's roots plus those of `EXTRA_CA_BUNDLE` (a GitHub
//! Enterprise Server with a private CA, a TLS-inspecting proxy).

use std::sync::Arc;

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Certificates trusted beside the system's roots: the PEM text, checked to hold at least one
/// certificate (the AWS client parses it again, and would panic on a bad one).
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    pem: Option<Arc<Vec<u8>>>,
}

impl ExtraRoots {
    /// `EXTRA_CA_BUNDLE`: a PEM file's path, or the PEM text itself (where a file is awkward, as
    /// in a Lambda's environment, `\n` may stand for the line breaks).
    pub fn parse(value: &str) -> Result<Self, String> {
        let pem = if value.contains("-----BEGIN") {
            value.replace("\\n", "\n").into_bytes()
        } else {
            std::fs::read(value).map_err(|e| format!("is {value:?}, a file that cannot be read: {e}"))?
        };
        match certificates(&pem) {
            Ok(found) if !found.is_empty() => Ok(Self { pem: Some(Arc::new(pem)) }),
            Ok(_) => Err(format!("({value:.60}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")),
            Err(e) => Err(format!("({value:.60}) holds a certificate that is not valid PEM: {e}")),
        }
    }

    /// The certificates, for reqwest (GitHub, the intake).
    pub(crate) fn reqwest_certificates(&self) -> Vec<reqwest::Certificate> {
        let Some(pem) = &self.pem else { return Vec::new() };
        let ders = certificates(pem).unwrap_or_default();
        ders.iter().filter_map(|der| reqwest::Certificate::from_der(der).ok()).collect()
    }

    fn trust_store(&self) -> TrustStore {
        match &self.pem {
            Some(pem) => TrustStore::default().with_pem_certificate(pem.as_slice()),
            None => TrustStore::default(),
        }
    }
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls_pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem).collect()
}

/// The AWS SDK's own client (hyper, rustls on aws-lc-rs) with the proxy from the environment and
/// the extra roots: by default it uses neither. One connector per timeout setting, as the SDK's
/// builder keeps them (S3's differ from the rest).
pub(crate) fn aws_http_client(roots: &ExtraRoots) -> SharedHttpClient {
    let tls = TlsContext::builder().with_trust_store(roots.trust_store()).build().unwrap_or_default();
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = Connector::builder().proxy_config(ProxyConfig::from_env());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc)).tls_context(tls.clone()).build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_A_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_bundle_that_is_not_a_readable_pem_certificate_is_refused_with_the_reason() {
        let missing = ExtraRoots::parse("/nonexistent/ca.pem").expect_err("no such file");
        assert!(missing.contains("cannot be read"), "{missing}");
        let bad = ExtraRoots::parse(NOT_A_CERTIFICATE).expect_err("bad base64");
        assert!(bad.contains("not valid PEM"), "{bad}");
        let key_only = ExtraRoots::parse("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .expect_err("no certificate");
        assert!(key_only.contains("holds no PEM certificate"), "{key_only}");
    }

    #[test]
    fn pem_text_with_escaped_line_breaks_as_in_a_lambda_environment_gives_its_certificates() {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["ca.internal".to_owned()]).expect("params");
        let pem = params.self_signed(&key).expect("certificate").pem();
        let two = format!("{pem}{pem}");
        assert_eq!(ExtraRoots::parse(&two).expect("PEM text").reqwest_certificates().len(), 2);
        let escaped = two.replace('\n', "\\n");
        assert_eq!(ExtraRoots::parse(&escaped).expect("escaped PEM text").reqwest_certificates().len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn no_value_makes_the_bundle_reader_panic(tail in ".{0,200}", body in "[A-Za-z0-9+/=\\n-]{0,300}") {
            let _ = ExtraRoots::parse(&format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----{tail}"));
            let _ = ExtraRoots::parse(&tail);
        }
    }

    #[test]
    fn no_bundle_adds_no_certificate() {
        assert!(ExtraRoots::default().reqwest_certificates().is_empty());
    }
}
