//! `ProvisioningJournals` on SQLite: one JSON journal per thing.

use async_trait::async_trait;
use ggprov_domain::ThingName;
use ggprov_domain::ports::{ProvisioningJournals, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;

use crate::sql::query;
use rusqlite::Connection;

use crate::rows::corrupt;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl ProvisioningJournals for SqliteStore {
    async fn journal(&self, name: &ThingName) -> Result<ProvisioningJournal, StoreError> {
        let row = query("SELECT journal, rev FROM provisioning_journals WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        match row {
            Some(row) => {
                let mut journal: ProvisioningJournal = serde_json::from_str(row.get_str("journal")).map_err(corrupt)?;
                journal.rev = u64::try_from(row.get::<i64>("rev")).unwrap_or_default();
                Ok(journal)
            }
            None => Ok(ProvisioningJournal::default()),
        }
    }

    async fn save_journal(&self, name: &ThingName, journal: &mut ProvisioningJournal) -> Result<(), StoreError> {
        if !self.write(|c| write_journal(c, name, journal)).await? {
            return Err(StoreError::Conflict);
        }
        journal.rev += 1;
        Ok(())
    }
}

/// Writes a journal at revision `journal.rev + 1` on condition that the stored one is at
/// `journal.rev` (absent for 0); `false` when it is not (another writer saved in between).
pub(crate) fn write_journal(
    c: &Connection,
    name: &ThingName,
    journal: &ProvisioningJournal,
) -> Result<bool, StoreError> {
    let text = serde_json::to_string(journal).expect("journals serialise");
    let saved = if journal.rev == 0 {
        query("INSERT INTO provisioning_journals (name, journal, rev) VALUES (?, ?, 1) ON CONFLICT (name) DO NOTHING")
            .bind(name.as_str())
            .bind(text)
            .execute(c)
    } else {
        query("UPDATE provisioning_journals SET journal = ?, rev = rev + 1 WHERE name = ? AND rev = ?")
            .bind(text)
            .bind(name.as_str())
            .bind(i64::try_from(journal.rev).unwrap_or(i64::MAX))
            .execute(c)
    }
    .map_err(unavailable)?;
    Ok(saved.rows_affected() == 1)
}
