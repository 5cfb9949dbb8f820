//! TSIG keys (RFC 8945) named in the configuration, and the hickory `TSigner` made from them.
//!
//! A key section is `{ name, algorithm, secret_env }`: the secret itself never goes in the file.
//! The configuration checks the name, algorithm and variable name; the secret is read from the
//! environment when the agent starts ([`TsigKeyConfig::resolve`]), so `check-config` runs where the
//! secret is not available. The value is base64 exactly as `tsig-keygen` prints it (the bare
//! `secret "…";` value, or the whole `key "…" { … };` block). Used by `publish:` (RFC 2136
//! updates) and `secondaries:` (zone transfers and NOTIFY).

use std::fmt;
use std::str::FromStr;

use hickory_proto::rr::Name;
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{ConfigError, Validator};

/// Allowed difference between our clock and the server's, in seconds (RFC 8945 §10: 300).
pub const TSIG_FUDGE: u16 = 300;

/// A TSIG key section exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsigSection {
    /// The key's name, as the DNS server knows it (`key "NAME"` in BIND).
    pub name: Spanned<String>,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub algorithm: Option<Spanned<String>>,
    /// Environment variable holding the base64 secret.
    pub secret_env: Spanned<String>,
}

/// The HMAC algorithms a key may use: the ones hickory signs with, and every server supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgo {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgo {
    /// The name as written in the configuration and by `tsig-keygen -a`.
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgo::HmacSha256 => "hmac-sha256",
            TsigAlgo::HmacSha384 => "hmac-sha384",
            TsigAlgo::HmacSha512 => "hmac-sha512",
        }
    }

    pub fn to_hickory(self) -> TsigAlgorithm {
        match self {
            TsigAlgo::HmacSha256 => TsigAlgorithm::HmacSha256,
            TsigAlgo::HmacSha384 => TsigAlgorithm::HmacSha384,
            TsigAlgo::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

impl FromStr for TsigAlgo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let folded = text.trim().trim_end_matches('.').to_ascii_lowercase();
        match folded.as_str() {
            "hmac-sha256" => Ok(TsigAlgo::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgo::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgo::HmacSha512),
            "hmac-md5" | "hmac-md5.sig-alg.reg.int" | "hmac-sha1" | "hmac-sha224" => Err(format!(
                "`{text}` is too weak or not supported; use hmac-sha256, hmac-sha384 or hmac-sha512 (make a new key with `tsig-keygen -a hmac-sha256 NAME`)"
            )),
            _ => Err(format!(
                "`{text}` is not one of hmac-sha256, hmac-sha384, hmac-sha512"
            )),
        }
    }
}

impl fmt::Display for TsigAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated key section: where the secret is, not the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigKeyConfig {
    /// The key name, lower case, fully qualified.
    pub name: Name,
    pub algorithm: TsigAlgo,
    /// Environment variable holding the base64 secret.
    pub secret_env: String,
    /// Key path of the section (`publish.tsig`), file and line, for messages at start.
    pub key: String,
    pub file: String,
    pub location: Option<(u64, u64)>,
}

impl TsigKeyConfig {
    /// Reads and decodes the secret now. The error names the variable, never a value.
    pub fn resolve(&self) -> Result<TsigKey, ConfigError> {
        let error = |message: String| ConfigError {
            file: self.file.clone(),
            location: self.location,
            key: format!("{}.secret_env", self.key),
            message,
            snippet: None,
        };
        let name = &self.secret_env;
        let value = match std::env::var(name) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => {
                return Err(error(format!(
                    "environment variable `{name}` is not set; export the key's base64 secret (the `secret` line of `tsig-keygen -a {} {}`) before starting failoverd (with systemd: Environment= or EnvironmentFile=)",
                    self.algorithm,
                    self.name.to_string().trim_end_matches('.')
                )));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(error(format!(
                    "environment variable `{name}` is not valid UTF-8; it must hold the base64 secret"
                )));
            }
        };
        let secret = decode_secret(&value).map_err(|why| {
            error(format!(
                "environment variable `{name}` does not hold a TSIG secret: {why}; put the base64 value of the `secret` line that `tsig-keygen` prints there"
            ))
        })?;
        Ok(TsigKey {
            name: self.name.clone(),
            algorithm: self.algorithm,
            secret,
        })
    }

    /// Reads the secret and builds the signer (see [`TsigKey::signer`]).
    pub fn signer(&self) -> Result<TSigner, ConfigError> {
        Ok(self.resolve()?.signer())
    }

    /// In words, for the summary: `key failoverd (hmac-sha256), secret from $FAILOVERD_TSIG_SECRET`.
    pub fn describe(&self) -> String {
        format!(
            "key {} ({}), secret from ${}",
            self.name.to_string().trim_end_matches('.'),
            self.algorithm,
            self.secret_env
        )
    }
}

/// A key with its secret, read at start. Debug never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: TsigAlgo,
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .finish()
    }
}

impl TsigKey {
    /// The hickory signer for this key (fudge [`TSIG_FUDGE`]); signs and verifies messages.
    pub fn signer(&self) -> TSigner {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.to_hickory(),
            self.name.clone(),
            TSIG_FUDGE,
        )
        .expect("hmac-sha256/384/512 are supported by hickory's dnssec-ring feature")
    }
}

/// Decodes a secret as `tsig-keygen` prints it: bare base64 (whitespace, quotes and a trailing
/// `;` allowed), or the whole `key "…" { algorithm …; secret "…"; };` block.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let mut value = text.trim();
    if let Some(at) = value.find("secret") {
        // The whole key block: take what follows `secret`.
        let rest = &value[at + "secret".len()..];
        value = rest.split(';').next().unwrap_or(rest).trim();
    }
    let value = value.trim_end_matches(';').trim().trim_matches('"');
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("it is empty".to_string());
    }
    let secret = data_encoding::BASE64
        .decode(compact.as_bytes())
        .map_err(|e| format!("it is not valid base64 ({e})"))?;
    if secret.is_empty() {
        return Err("it decodes to an empty key".to_string());
    }
    Ok(secret)
}

impl Validator<'_> {
    // Called by the sections that use keys (`publish:`, `secondaries:`), which merge separately.
    #[allow(dead_code)]
    /// Validates a key section found at `key` (such as `publish.tsig`).
    pub(super) fn tsig(
        &self,
        section: TsigSection,
        key: &str,
    ) -> Result<TsigKeyConfig, ConfigError> {
        let TsigSection {
            name,
            algorithm,
            secret_env,
        } = section;
        let text = name.value.trim().trim_end_matches('.');
        let parsed = Name::from_ascii(text)
            .ok()
            .filter(|_| !text.is_empty() && !text.contains(char::is_whitespace))
            .ok_or_else(|| {
                self.error(
                    &name,
                    format!("{key}.name"),
                    format!(
                        "`{}` is not a key name; use the name the DNS server knows the key by (`key \"NAME\"` in BIND)",
                        name.value
                    ),
                )
            })?;
        let mut parsed = parsed.to_lowercase();
        parsed.set_fqdn(true);
        let algo = match &algorithm {
            None => TsigAlgo::HmacSha256,
            Some(span) => span
                .value
                .parse()
                .map_err(|why: String| self.error(span, format!("{key}.algorithm"), why))?,
        };
        let env = &secret_env.value;
        let valid = !env.is_empty()
            && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !env.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(self.error(
                &secret_env,
                format!("{key}.secret_env"),
                format!(
                    "`{env}` is not an environment variable name (example: FAILOVERD_TSIG_SECRET); the secret itself never goes in the file"
                ),
            ));
        }
        let (line, column) = (secret_env.referenced.line(), secret_env.referenced.column());
        Ok(TsigKeyConfig {
            name: parsed,
            algorithm: algo,
            secret_env: secret_env.value,
            key: key.to_string(),
            file: self.file.clone(),
            location: (line > 0).then_some((line, column)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key as `tsig-keygen -a hmac-sha256 failoverd` prints it.
    const KEYGEN: &str = "key \"failoverd\" {\n\talgorithm hmac-sha256;\n\tsecret \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\";\n};\n";

    #[test]
    fn the_secret_is_read_as_tsig_keygen_prints_it() {
        let bare = decode_secret("3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=").unwrap();
        assert_eq!(bare.len(), 32);
        assert_eq!(&bare[..4], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(decode_secret(KEYGEN).unwrap(), bare);
        assert_eq!(
            decode_secret("  \"3q2+7wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhs=\";\n").unwrap(),
            bare
        );
    }

    #[test]
    fn a_bad_secret_says_why() {
        assert_eq!(decode_secret("  ").unwrap_err(), "it is empty");
        assert!(
            decode_secret("not base64!")
                .unwrap_err()
                .contains("not valid base64")
        );
    }

    fn validate(yaml: &str) -> Result<TsigKeyConfig, ConfigError> {
        let section: TsigSection = serde_saphyr::from_str(yaml).unwrap();
        let validator = Validator {
            file: "config.yaml".to_string(),
            text: yaml,
        };
        validator.tsig(section, "publish.tsig")
    }

    #[test]
    fn a_section_is_validated_with_the_line_of_the_mistake() {
        let key = validate("name: FailoverD.\nsecret_env: FAILOVERD_TSIG_SECRET\n").unwrap();
        assert_eq!(key.name.to_string(), "failoverd.");
        assert_eq!(key.algorithm, TsigAlgo::HmacSha256);
        assert_eq!(
            key.describe(),
            "key failoverd (hmac-sha256), secret from $FAILOVERD_TSIG_SECRET"
        );
        let error = validate("name: k\nalgorithm: hmac-md5\nsecret_env: X\n").unwrap_err();
        assert_eq!(error.key, "publish.tsig.algorithm");
        assert_eq!(error.location, Some((2, 12)));
        let error = validate("name: k\nsecret_env: \"c2VjcmV0+/8=\"\n").unwrap_err();
        assert!(error.message.contains("never goes in the file"), "{error}");
        assert!(validate("name: \"a b\"\nsecret_env: X\n").is_err());
    }

    #[test]
    fn algorithms_are_the_three_hmacs() {
        assert_eq!("HMAC-SHA512.".parse::<TsigAlgo>(), Ok(TsigAlgo::HmacSha512));
        assert!(
            "hmac-md5"
                .parse::<TsigAlgo>()
                .unwrap_err()
                .contains("too weak")
        );
        assert!(
            "rsa"
                .parse::<TsigAlgo>()
                .unwrap_err()
                .contains("not one of")
        );
    }

    #[test]
    fn a_missing_variable_names_it_and_says_what_to_do() {
        let config = TsigKeyConfig {
            name: Name::from_ascii("failoverd.").unwrap(),
            algorithm: TsigAlgo::HmacSha256,
            secret_env: "FAILOVERD_TEST_TSIG_SURELY_UNSET".to_string(),
            key: "publish.tsig".to_string(),
            file: "config.yaml".to_string(),
            location: Some((3, 5)),
        };
        let error = config.resolve().unwrap_err().to_string();
        assert!(error.contains("publish.tsig.secret_env"), "{error}");
        assert!(
            error.contains("`FAILOVERD_TEST_TSIG_SURELY_UNSET` is not set"),
            "{error}"
        );
        assert!(
            error.contains("tsig-keygen -a hmac-sha256 failoverd"),
            "{error}"
        );
    }

    #[test]
    fn the_signer_signs_and_its_signature_verifies() {
        use hickory_proto::op::{Message, MessageType, OpCode};
        use hickory_proto::serialize::binary::BinEncodable;
        let key = TsigKey {
            name: Name::from_ascii("failoverd.").unwrap(),
            algorithm: TsigAlgo::HmacSha384,
            secret: decode_secret(KEYGEN).unwrap(),
        };
        let signer = key.signer();
        assert_eq!(signer.signer_name(), &key.name);
        assert_eq!(signer.algorithm(), &TsigAlgorithm::HmacSha384);
        let mut message = Message::new(7, MessageType::Query, OpCode::Update);
        message.finalize(&signer, 1_700_000_000).unwrap();
        let bytes = message.to_bytes().unwrap();
        let (_, time, _) = signer.verify_message_byte(&bytes, None, true).unwrap();
        assert_eq!(time, 1_700_000_000);
        let other = TsigKey {
            secret: vec![1; 32],
            ..key
        };
        assert!(
            other
                .signer()
                .verify_message_byte(&bytes, None, true)
                .is_err()
        );
        assert!(
            !format!("{other:?}").contains("1, 1"),
            "Debug hides the secret"
        );
    }
}
