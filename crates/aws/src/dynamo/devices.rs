//! `DeviceRecords` on DynamoDB: `DEVICE#<name>` / `#DEVICE`, listed by core in `gsi2`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use ggprov_domain::certificates::ThingKind;
use ggprov_domain::cores::{Device, Event};
use ggprov_domain::ports::{DeviceRecords, StoreError};
use ggprov_domain::provisioning::ProvisioningJournal;
use ggprov_domain::{Page, PageRequest, TaskId, TaskStatus, ThingName, Timestamp};

use super::journals::journal_pk;
use super::{DynamoStore, Query, doc, key, s, to_doc};

impl DynamoStore {
    async fn device_item(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        self.get(&format!("DEVICE#{}", name.as_str()), "#DEVICE").await?.as_ref().map(doc).transpose()
    }

    pub(crate) fn device_put(&self, device: &Device) -> TransactWriteItem {
        let mut item = key(format!("DEVICE#{}", device.name.as_str()), "#DEVICE");
        item.insert("doc".into(), to_doc(device));
        item.insert("gsi2pk".into(), s(format!("DEVICES#{}", device.core_name.as_str())));
        item.insert("gsi2sk".into(), s(device.name.as_str()));
        TransactWriteItem::builder()
            .put(Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("complete put"))
            .build()
    }
}

#[async_trait]
impl DeviceRecords for DynamoStore {
    async fn existing_devices(&self, names: &[ThingName]) -> Result<std::collections::BTreeSet<ThingName>, StoreError> {
        let keys = names.iter().map(|n| key(format!("DEVICE#{}", n.as_str()), "#DEVICE")).collect();
        self.existing_keys(keys)
            .await?
            .iter()
            .map(|item| {
                let pk = super::get_s(item, "pk")?;
                ThingName::parse(pk.trim_start_matches("DEVICE#")).map_err(|_| super::corrupt("device name"))
            })
            .collect()
    }

    async fn complete_device_create(
        &self,
        task: &TaskId,
        device: &Device,
        event: &Event,
        journal: Option<&ProvisioningJournal>,
    ) -> Result<(), StoreError> {
        // The journal goes first: the fence whose failure is a conflict (see `retry_tx!`).
        let fence = journal.map(|j| self.journal_write(&device.name, j));
        retry_tx!(self, fence.is_some(), {
            let now = Timestamp::now();
            let Some(ends) = self.end_item_writes(task, &device.name, TaskStatus::Success, None, now).await? else {
                return Ok(None);
            };
            let mut writes: Vec<TransactWriteItem> = fence.iter().cloned().collect();
            writes.extend(ends);
            let mut stored = device.clone();
            let existing = self.device_item(&device.name).await?;
            if let Some(existing) = &existing {
                stored.created_at = existing.created_at;
            }
            stored.updated_at = Some(now);
            writes.push(self.device_put(&stored));
            writes.extend(self.certificate_writes(
                ThingKind::Device,
                &device.name,
                existing.as_ref().and_then(|d| d.certificate.as_ref()),
                stored.certificate.as_ref(),
            ));
            writes.push(self.event_put(event, now));
            Ok(Some(writes))
        })
    }

    async fn complete_device_delete(
        &self,
        task: Option<&TaskId>,
        name: &ThingName,
        event: &Event,
    ) -> Result<(), StoreError> {
        retry_tx!(self, {
            let now = Timestamp::now();
            let mut writes = Vec::new();
            if let Some(task) = task {
                match self.end_item_writes(task, name, TaskStatus::Success, None, now).await? {
                    Some(ends) => writes.extend(ends),
                    None => return Ok(None),
                }
            }
            let existing = self.device_item(name).await?;
            let exists = existing.is_some();
            if let Some(cert) = existing.as_ref().and_then(|d| d.certificate.as_ref()) {
                writes.extend(self.certificate_writes(ThingKind::Device, name, Some(cert), None));
            }
            writes.push(self.delete_write(format!("DEVICE#{}", name.as_str()), "#DEVICE"));
            writes.push(self.delete_write(journal_pk(name), "#JOURNAL"));
            // A direct delete of a device that is already gone changes nothing and says nothing.
            if task.is_some() || exists {
                writes.push(self.event_put(event, now));
            }
            Ok(Some(writes))
        })
    }

    async fn list_devices_of_core(
        &self,
        core: &ThingName,
        page: PageRequest<ThingName>,
    ) -> Result<Page<Device, ThingName>, StoreError> {
        let mut query = Query::partition(Some("gsi2"), format!("DEVICES#{}", core.as_str()));
        query.after = page.exclusive_start.as_ref().map(|n| n.as_str().to_owned());
        query.limit = Some(page.limit as usize + 1);
        let devices = self.query(query).await?.iter().map(doc).collect::<Result<Vec<Device>, _>>()?;
        Ok(Page::from_overfetch(devices, page.limit, |d| d.name.clone()))
    }

    async fn device(&self, name: &ThingName) -> Result<Option<Device>, StoreError> {
        self.device_item(name).await
    }
}
