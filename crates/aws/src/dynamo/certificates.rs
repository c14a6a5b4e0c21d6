//! `CertificateInventory` on DynamoDB. Every recorded certificate is `CERT#<id>` / `#CERT` (its
//! entry as `doc`); an ACTIVE one is also in the sparse `gsi2` listing `CERTEXP#<shard>` sorted
//! by `<notAfter>#<id>`. Counters `CERTDAY#<shard>` / `<ca>#<day>` hold the ACTIVE certificates
//! per CA and UTC expiry day, moved by the domain's `CertificateDelta` in the transaction that
//! writes the record. A count before a bound adds the counters of the days before the bound's
//! day to the certificates of the bound's own day read from `gsi2` up to the bound, so counts
//! are exact at any instant while reading O(CAs × days) counters.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use ggprov_domain::certificates::{
    CaCounts, CertificateDelta, CertificateEntry, CertificateInfo, CertificateState, ExpiryKey, ThingKind, day_of,
    day_start,
};
use ggprov_domain::cores::{Device, Event};
use ggprov_domain::ports::{CertificateInventory, StoreError};
use ggprov_domain::{Page, PageRequest, ThingName, Timestamp};

use super::{DynamoStore, Item, Query, SHARDS, doc, get_n, get_s, key, n, s, shard_of, to_doc};

fn cert_pk(id: &str) -> String {
    format!("CERT#{id}")
}

/// The `gsi2` sort key of an ACTIVE certificate (and the bounds compared with it).
fn expiry_sk(at: Timestamp, id: &str) -> String {
    if id.is_empty() { format!("{:015}", at.as_millis()) } else { format!("{:015}#{id}", at.as_millis()) }
}

impl DynamoStore {
    /// The writes that make the inventory follow a record's certificate from `before` to `after`.
    pub(crate) fn certificate_writes(
        &self,
        kind: ThingKind,
        name: &ThingName,
        before: Option<&CertificateInfo>,
        after: Option<&CertificateInfo>,
    ) -> Vec<TransactWriteItem> {
        let mut writes = Vec::new();
        if before == after {
            return writes;
        }
        if let Some(old) = before.filter(|b| after.is_none_or(|a| a.certificate_id != b.certificate_id)) {
            writes.push(self.delete_write(cert_pk(&old.certificate_id), "#CERT"));
        }
        if let Some(cert) = after {
            let entry = CertificateEntry { thing_name: name.clone(), thing_kind: kind, certificate: cert.clone() };
            let mut item = key(cert_pk(&cert.certificate_id), "#CERT");
            item.insert("doc".into(), to_doc(&entry));
            item.insert("ca".into(), s(cert.ca_key()));
            if cert.is_active() {
                item.insert("gsi2pk".into(), s(format!("CERTEXP#{}", shard_of(name.as_str()))));
                item.insert("gsi2sk".into(), s(expiry_sk(cert.not_after, &cert.certificate_id)));
            }
            let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().expect("complete put");
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        let shard = shard_of(name.as_str());
        for ((ca, day), d) in CertificateDelta::between(before, after).iter() {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("CERTDAY#{shard}"), format!("{ca}#{day:08}"))))
                .update_expression("SET ca = :ca, d = :day ADD c :c")
                .expression_attribute_values(":ca", s(ca))
                .expression_attribute_values(":day", n(day))
                .expression_attribute_values(":c", n(d))
                .build()
                .expect("complete update");
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        writes
    }

    /// Gives a device the certificate `change` picks from it (none: leave it), with `event`, in
    /// one transaction; whether it was written.
    async fn change_device_certificate(
        &self,
        name: &ThingName,
        at: Option<Timestamp>,
        event: Option<&Event>,
        change: impl Fn(&Device) -> Option<CertificateInfo>,
    ) -> Result<bool, StoreError> {
        let mut written = false;
        retry_tx!(self, {
            written = false;
            let Some(item) = self.get(&format!("DEVICE#{}", name.as_str()), "#DEVICE").await? else {
                return Ok(None);
            };
            let before: Device = doc(&item)?;
            let Some(certificate) = change(&before) else { return Ok(None) };
            let mut device = before.clone();
            device.certificate = Some(certificate);
            if let Some(at) = at {
                device.updated_at = Some(at);
            }
            let mut writes = vec![self.device_put(&device)];
            writes.extend(self.certificate_writes(
                ThingKind::Device,
                name,
                before.certificate.as_ref(),
                device.certificate.as_ref(),
            ));
            if let Some(event) = event {
                writes.push(self.event_put(event, at.unwrap_or_else(Timestamp::now)));
            }
            written = true;
            Ok(Some(writes))
        })?;
        Ok(written)
    }

    /// ACTIVE certificates of every shard with `notAfter` in `[from, to)`, as raw items.
    async fn active_between(&self, from: &str, to: &str, limit: Option<usize>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        for shard in 0..SHARDS {
            let mut query = Query::partition(Some("gsi2"), format!("CERTEXP#{shard}"));
            query.after = Some(from.to_owned());
            query.before = Some(to.to_owned());
            query.limit = limit;
            items.extend(self.query(query).await?);
        }
        Ok(items)
    }
}

#[async_trait]
impl CertificateInventory for DynamoStore {
    async fn certificate(&self, id: &str) -> Result<Option<CertificateEntry>, StoreError> {
        self.get(&cert_pk(id), "#CERT").await?.as_ref().map(doc).transpose()
    }

    async fn expiring_certificates(
        &self,
        before: Timestamp,
        page: PageRequest<ExpiryKey>,
    ) -> Result<Page<CertificateEntry, ExpiryKey>, StoreError> {
        // Strictly after the start key (the inclusive read returns it, and it is dropped: hence
        // two more than the page per shard); " " sorts before every key.
        let from = page.exclusive_start.as_ref().map_or_else(|| " ".to_owned(), |(t, id)| expiry_sk(*t, id));
        let items = self.active_between(&from, &expiry_sk(before, ""), Some(page.limit as usize + 2)).await?;
        let mut keyed = items
            .iter()
            .map(|item| Ok((get_s(item, "gsi2sk")?.to_owned(), doc::<CertificateEntry>(item)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        keyed.retain(|(sk, _)| *sk > from);
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        keyed.truncate(page.limit as usize + 1);
        let entries = keyed.into_iter().map(|(_, e)| e).collect();
        Ok(Page::from_overfetch(entries, page.limit, |e| {
            (e.certificate.not_after, e.certificate.certificate_id.clone())
        }))
    }

    async fn certificate_counts(&self, bounds: &[Timestamp]) -> Result<BTreeMap<String, CaCounts>, StoreError> {
        let mut days: Vec<(String, i64, i64)> = Vec::new();
        for shard in 0..SHARDS {
            for item in self.query(Query::partition(None, format!("CERTDAY#{shard}"))).await? {
                days.push((get_s(&item, "ca")?.to_owned(), get_n(&item, "d")?, get_n(&item, "c")?));
            }
        }
        let mut counts: BTreeMap<String, CaCounts> = BTreeMap::new();
        let blank = || CaCounts { active: 0, before: vec![0; bounds.len()] };
        for (ca, day, c) in &days {
            let counts = counts.entry(ca.clone()).or_insert_with(blank);
            counts.active += c;
            for (i, bound) in bounds.iter().enumerate() {
                if *day < day_of(*bound) {
                    counts.before[i] += c;
                }
            }
        }
        // The bound's own day: the certificates of that day that end before the bound.
        for (i, bound) in bounds.iter().enumerate() {
            let start = day_start(day_of(*bound));
            if start == *bound {
                continue;
            }
            for item in self.active_between(&expiry_sk(start, ""), &expiry_sk(*bound, ""), None).await? {
                counts.entry(get_s(&item, "ca")?.to_owned()).or_insert_with(blank).before[i] += 1;
            }
        }
        counts.retain(|_, c| c.active != 0);
        Ok(counts)
    }

    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateState,
        at: Timestamp,
        event: &Event,
    ) -> Result<Option<CertificateEntry>, StoreError> {
        let Some(mut entry) = self.certificate(id).await? else { return Ok(None) };
        let Some(after) = entry.certificate.changed_to(status, at) else { return Ok(Some(entry)) };
        let name = entry.thing_name.clone();
        match entry.thing_kind {
            ThingKind::Core => {
                let changed = self
                    .change_core(name.as_str(), |before| {
                        let core = &before?.core;
                        if core.certificate.as_ref().map(|c| c.certificate_id.as_str()) != Some(id) {
                            return None;
                        }
                        let mut core = core.clone();
                        core.certificate = Some(after.clone());
                        core.updated_at = Some(at);
                        Some((Some(core), vec![self.event_put(event, at)]))
                    })
                    .await?;
                if !changed {
                    return Ok(None);
                }
            }
            ThingKind::Device => {
                let changed = self
                    .change_device_certificate(&name, Some(at), Some(event), |device| {
                        (device.certificate.as_ref().map(|c| c.certificate_id.as_str()) == Some(id))
                            .then(|| after.clone())
                    })
                    .await?;
                if !changed {
                    return Ok(None);
                }
            }
        }
        entry.certificate = after;
        Ok(Some(entry))
    }

    async fn replace_device_certificate(
        &self,
        name: &ThingName,
        certificate: &CertificateInfo,
        at: Timestamp,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.change_device_certificate(name, Some(at), Some(event), |_| Some(certificate.clone())).await
    }

    async fn fill_missing_certificate(
        &self,
        kind: ThingKind,
        name: &ThingName,
        certificate: &CertificateInfo,
    ) -> Result<bool, StoreError> {
        match kind {
            ThingKind::Core => {
                self.change_core(name.as_str(), |before| {
                    let core = &before?.core;
                    if core.certificate.is_some() {
                        return None;
                    }
                    let mut core = core.clone();
                    core.certificate = Some(certificate.clone());
                    Some((Some(core), Vec::new()))
                })
                .await
            }
            ThingKind::Device => {
                self.change_device_certificate(name, None, None, |device| {
                    device.certificate.is_none().then(|| certificate.clone())
                })
                .await
            }
        }
    }
}
