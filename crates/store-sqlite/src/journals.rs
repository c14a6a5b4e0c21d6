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
        let row = sqlx::query("SELECT journal, rev FROM provisioning_journals WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        match row {
            Some(row) => {
                let mut journal: ProvisioningJournal =
                    serde_json::from_str(row.get::<&str, _>("journal")).map_err(corrupt)?;
                journal.rev = u64::try_from(row.get::<i64, _>("rev")).unwrap_or_default();
                Ok(journal)
            }
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &mut ProvisioningJournal) -> Result<(), StoreError> {
        let text = serde_json::to_string(&*journal).expect("journals serialise");
        let saved = if journal.rev == 0 {
            sqlx::query(
                "INSERT INTO provisioning_journals (name, journal, rev) VALUES (?, ?, 1) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name.as_str())
            .bind(text)
            .execute(&self.pool)
            .await
        } else {
            sqlx::query("UPDATE provisioning_journals SET journal = ?, rev = rev + 1 WHERE name = ? AND rev = ?")
                .bind(text)
                .bind(name.as_str())
                .bind(i64::try_from(journal.rev).unwrap_or(i64::MAX))
                .execute(&self.pool)
                .await
        }
        .map_err(unavailable)?;
        if saved.rows_affected() != 1 {
            return Err(StoreError::Conflict);
        }
        journal.rev += 1;
        Ok(())
    }
}
