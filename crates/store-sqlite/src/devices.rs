//! `DeviceRecords` on SQLite: client devices in `devices`, by core.

use async_trait::async_trait;
use ggprov_domain::certificates::ThingKind;
use ggprov_domain::cores::{Device, Event};
use ggprov_domain::ports::{DeviceRecords, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};

use crate::rows::{device_from_row, end_item, write_event};
use crate::sql::query;
use crate::{SqliteStore, unavailable};

#[async_trait]
impl DeviceRecords for SqliteStore {
    async fn existing_devices(&self, names: &[ThingName]) -> Result<std::collections::BTreeSet<ThingName>, StoreError> {
        crate::rows::existing(self.reader(), "devices", names)
    }

    async fn complete_device_create(
        &self,
        task: &TaskId,
        device: &Device,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(|c| {
            if !end_item(c, task, &device.name, TaskStatus::Success, None, now)? {
                return Ok(());
            }
            if let Some(journal) = journal
                && !crate::journals::write_journal(c, &device.name, journal)?
            {
                return Err(StoreError::Conflict); // the error rolls the transaction back
            }
            query(
                "INSERT INTO devices (name, core_name, provisioning_template, artifacts, created_at, updated_at, certificate) VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET core_name = excluded.core_name, provisioning_template = excluded.provisioning_template, \
                 artifacts = excluded.artifacts, updated_at = excluded.updated_at, certificate = excluded.certificate",
            )
            .bind(device.name.as_str())
            .bind(device.core_name.as_str())
            .bind(&device.provisioning_template)
            .bind(serde_json::to_string(&device.artifacts).expect("artifacts serialise"))
            .bind(device.created_at.as_millis())
            .bind(now.as_millis())
            .bind(device.certificate.as_ref().map(|c| serde_json::to_string(c).expect("certificates serialise")))
            .execute(c)
            .map_err(unavailable)?;
            crate::certificates::index(c, ThingKind::Device, device.name.as_str(), device.certificate.as_ref())?;
            write_event(c, event, now)?;
            Ok(())
        })
        .await
    }

    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now();
        self.write(|c| {
            if let Some(task) = task
                && !end_item(c, task, name, TaskStatus::Success, None, now)?
            {
                return Ok(());
            }
            let deleted =
                query("DELETE FROM devices WHERE name = ?").bind(name.as_str()).execute(c).map_err(unavailable)?;
            crate::certificates::index(c, ThingKind::Device, name.as_str(), None)?;
            query("DELETE FROM provisioning_journals WHERE name = ?")
                .bind(name.as_str())
                .execute(c)
                .map_err(unavailable)?;
            // A direct delete of a device that is already gone changes nothing and says nothing.
            if task.is_some() || deleted.rows_affected() > 0 {
                write_event(c, event, now)?;
            }
            Ok(())
        })
        .await
    }

    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        let row = query("SELECT * FROM devices WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError> {
        let rows = query("SELECT * FROM devices WHERE core_name = ? AND name > ? ORDER BY name LIMIT ?")
            .bind(core.as_str())
            .bind(page.exclusive_start.as_ref().map_or("", ThingName::as_str))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.reader())
            .map_err(unavailable)?;
        let devices = rows.iter().map(device_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(devices, page.limit, |d| d.name.clone()))
    }
}
