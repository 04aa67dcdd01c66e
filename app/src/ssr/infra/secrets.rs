//! Secrets every instance of a deployment must share and none may invent on
//! its own (`deployment_secrets`): the key that seals form errors, the key
//! that signs device cookies.

use sqlx::PgPool;

/// The deployment's 32-byte secret called `name`: created at random by
/// whichever instance asks first (concurrent first asks agree: `ON CONFLICT
/// DO NOTHING`, then read back).
pub async fn deployment_secret(db: &PgPool, name: &str) -> Result<[u8; 32], sqlx::Error> {
    let candidate: [u8; 32] = rand::random();
    sqlx::query(
        "INSERT INTO deployment_secrets (name, secret) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(candidate.as_slice())
    .execute(db)
    .await?;
    let secret: Vec<u8> =
        sqlx::query_scalar("SELECT secret FROM deployment_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(db)
            .await?;
    secret
        .try_into()
        .map_err(|_| sqlx::Error::Decode("deployment secret is not 32 bytes".into()))
}
