//! etcd's JWT auth tokens (`--auth-token jwt,pub-key=<file>,priv-key=<file>,sign-method=
//! <alg>[,ttl=<duration>]`): signed claims `{"username", "revision", "exp"}` that every
//! member holding the public key verifies without shared state. As in etcd, a token
//! carries the auth revision it was issued at (a later change of users or roles makes
//! requests with it fail with "revision of auth store is old" until the client
//! authenticates again), and lives `ttl` (5m by default) from its issue.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The options of `--auth-token jwt,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtOptions {
    /// `pub-key`: the key tokens are verified with.
    pub pub_key: PathBuf,
    /// `priv-key`: the key tokens are signed with (a member without one only verifies).
    pub priv_key: Option<PathBuf>,
    /// `sign-method`: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub sign_method: String,
    /// `ttl` (5m).
    pub ttl: Duration,
}

/// The signing algorithm etcd names `name` (`sign-method`), if supported.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Signs and verifies JWT tokens with the configured keys.
pub struct JwtTokens {
    alg: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("alg", &self.alg)
            .field("signs", &self.encoding.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtTokens {
    /// Loads the keys; errors name the file and what is wrong with it.
    pub fn load(o: &JwtOptions) -> Result<Self, String> {
        let alg = algorithm(&o.sign_method)
            .ok_or_else(|| format!("jwt sign-method {:?} is not supported", o.sign_method))?;
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("cannot read jwt key {}: {e}", p.display()))
        };
        let bad = |p: &PathBuf, e: jsonwebtoken::errors::Error| {
            format!(
                "jwt key {} is not a {} key: {e}",
                p.display(),
                o.sign_method
            )
        };
        let pem = read(&o.pub_key)?;
        let decoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            _ => DecodingKey::from_rsa_pem(&pem),
        }
        .map_err(|e| bad(&o.pub_key, e))?;
        let encoding = match &o.priv_key {
            None => None,
            Some(p) => {
                let pem = read(p)?;
                Some(
                    match alg {
                        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
                        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                        _ => EncodingKey::from_rsa_pem(&pem),
                    }
                    .map_err(|e| bad(p, e))?,
                )
            }
        };
        Ok(JwtTokens {
            alg,
            encoding,
            decoding,
            ttl: o.ttl,
        })
    }

    /// A signed token for `user` at auth `revision`, valid `ttl` from now; `None` on a
    /// member without the private key.
    pub fn assign(&self, user: &str, revision: u64) -> Option<String> {
        let key = self.encoding.as_ref()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: (now + self.ttl).as_secs(),
        };
        match jsonwebtoken::encode(&Header::new(self.alg), &claims, key) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "failed to sign jwt token");
                None
            }
        }
    }

    /// The user and auth revision a valid, unexpired token was issued for.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(d) => Some((d.claims.username, d.claims.revision)),
            Err(e) => {
                tracing::debug!(error = %e, "jwt token refused");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_with_the_public_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let (pubf, privf) = (dir.path().join("k.pub"), dir.path().join("k"));
        std::fs::write(&pubf, key.public_key_pem()).unwrap();
        std::fs::write(&privf, key.serialize_pem()).unwrap();
        let signer = JwtTokens::load(&JwtOptions {
            pub_key: pubf.clone(),
            priv_key: Some(privf),
            sign_method: "ES256".into(),
            ttl: Duration::from_secs(60),
        })
        .unwrap();
        let verifier = JwtTokens::load(&JwtOptions {
            pub_key: pubf,
            priv_key: None,
            sign_method: "ES256".into(),
            ttl: Duration::from_secs(60),
        })
        .unwrap();
        let t = signer.assign("alice", 7).unwrap();
        assert_eq!(t.split('.').count(), 3, "{t}");
        assert_eq!(verifier.verify(&t), Some(("alice".to_string(), 7)));
        assert_eq!(
            verifier.assign("alice", 7),
            None,
            "no private key: no signing"
        );
        let mut forged = t.clone();
        forged.pop();
        forged.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verifier.verify(&forged), None);
        assert_eq!(verifier.verify("abcdefghijklmnop.12"), None);
        // Expired.
        let expired = JwtTokens {
            ttl: Duration::ZERO,
            ..signer
        };
        let old = Claims {
            username: "alice".into(),
            revision: 7,
            exp: 1,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &old,
            expired.encoding.as_ref().unwrap(),
        )
        .unwrap();
        assert_eq!(verifier.verify(&t), None);
    }
}
