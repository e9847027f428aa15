//! Tokens (SimpleJWT-compatible HS256 JWTs) and password hashing (argon2).
//!
//! Nothing here knows HTTP: the request extractors that use it are the
//! API's (`api/extract.rs`), and its errors are its own.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use vato_eventlog::UserId;

/// A token or a hash that could not be made. Never the client's fault:
/// the API answers it with a 500.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("jwt encode: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("password hashing: {0}")]
    Hashing(String),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Claims {
    pub token_type: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// An integer, as SimpleJWT's: the Flutter client reads its own id here.
    pub user_id: UserId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_secs: u64,
    refresh_secs: u64,
}

impl Jwt {
    pub fn new(secret: &[u8], access_secs: u64, refresh_secs: u64) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        // jsonwebtoken accepts tokens up to 60 s past `exp` by default.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_secs,
            refresh_secs,
        }
    }

    pub fn issue(&self, user_id: UserId, token_type: TokenType) -> Result<String, AuthError> {
        let now = unix_now();
        let lifetime = match token_type {
            TokenType::Access => self.access_secs,
            TokenType::Refresh => self.refresh_secs,
        };
        let claims = Claims {
            token_type: token_type.as_str().to_string(),
            exp: now + lifetime,
            iat: now,
            jti: format!("{:032x}", rand::thread_rng().gen::<u128>()),
            user_id,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user of a valid, unexpired token of the given type.
    pub fn verify(&self, token: &str, token_type: TokenType) -> Option<UserId> {
        self.claims(token, token_type).map(|claims| claims.user_id)
    }

    /// The claims of a valid, unexpired token of the given type (logout
    /// and refresh need its `jti` and `exp`).
    pub fn claims(&self, token: &str, token_type: TokenType) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        (data.claims.token_type == token_type.as_str()).then_some(data.claims)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Password hashes run at once: one per core. Each argon2 hash takes 19 MiB
/// and tens of milliseconds of CPU; unbounded, a burst of logins would spawn
/// hundreds of blocking threads and gigabytes of memory. Beyond the limit,
/// logins queue.
fn hash_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Argon2id with the crate's default parameters (19 MiB, 2 passes). Runs on
/// the blocking pool: it costs tens of milliseconds of CPU by design.
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    let _permit = hash_permits()
        .acquire()
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hashing(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| AuthError::Hashing(e.to_string()))?
}

/// Checks a password against a stored hash. With no hash (unknown user) it
/// still spends the same time, so response times do not reveal usernames.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let Ok(_permit) = hash_permits().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let argon = Argon2::default();
        match hash.as_deref().map(PasswordHash::new) {
            Some(Ok(parsed)) => argon.verify_password(password.as_bytes(), &parsed).is_ok(),
            _ => {
                let salt = SaltString::generate(&mut OsRng);
                let _ = argon.hash_password(password.as_bytes(), &salt);
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_types_do_not_mix() {
        let jwt = Jwt::new(b"secret", 60, 120);
        let access = jwt.issue(7, TokenType::Access).unwrap();
        let refresh = jwt.issue(7, TokenType::Refresh).unwrap();
        assert_eq!(jwt.verify(&access, TokenType::Access), Some(7));
        assert_eq!(jwt.verify(&access, TokenType::Refresh), None);
        assert_eq!(jwt.verify(&refresh, TokenType::Refresh), Some(7));
        assert_eq!(
            Jwt::new(b"other", 60, 120).verify(&access, TokenType::Access),
            None
        );
    }

    #[test]
    fn an_expired_token_is_refused_without_leeway() {
        let jwt = Jwt::new(b"secret", 0, 0);
        let token = jwt.issue(7, TokenType::Access).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(jwt.verify(&token, TokenType::Access), None);
    }
}
