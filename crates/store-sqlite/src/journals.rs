//! `ProvisioningJournals` on SQLite: one JSON journal per thing.

use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{ProvisioningJournals, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use sqlx::Row;

use crate::rows::corrupt;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl ProvisioningJournals for SqliteStore {
    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        let row = sqlx::query("SELECT journal FROM provisioning_journals WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => serde_json::from_str(row.get::<&str, _>("journal")).map_err(corrupt),
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &ProvisioningJournal) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO provisioning_journals (name, journal) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET journal = excluded.journal")
            .bind(name.as_str())
            .bind(serde_json::to_string(journal).expect("journals serialise"))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
