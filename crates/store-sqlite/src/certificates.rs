//! `CertificateInventory` on SQLite: `certificates` indexes every recorded certificate by id
//! (with its record's JSON) and the ACTIVE ones by `not_after` (a partial index), written by the
//! same transaction as the core or device record that holds it. Counts are one aggregate read
//! inside a read transaction, so they are exact without counters.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ggprov_domain::certificates::{
    CaCounts, CertificateEntry, CertificateInfo, CertificateState, ExpiryKey, ThingKind,
};
use ggprov_domain::cores::Event;
use ggprov_domain::ports::{CertificateInventory, StoreError};
use ggprov_domain::{Page, PageRequest, ThingName, Timestamp};
use rusqlite::Connection;

use crate::rows::{corrupt, thing, write_event};
use crate::sql::{Row, query};
use crate::{SqliteStore, unavailable};

/// Makes the index hold `certificate` as the thing's only certificate (none: forget the thing's).
pub(crate) fn index(
    c: &Connection,
    kind: ThingKind,
    name: &str,
    certificate: Option<&CertificateInfo>,
) -> Result<(), StoreError> {
    query("DELETE FROM certificates WHERE thing_name = ?").bind(name).execute(c).map_err(unavailable)?;
    if let Some(cert) = certificate {
        query(
            "INSERT OR REPLACE INTO certificates (id, thing_name, thing_kind, ca, not_after, status, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&cert.certificate_id)
        .bind(name)
        .bind(kind.as_str())
        .bind(cert.ca_key())
        .bind(cert.not_after.as_millis())
        .bind(cert.status.as_str())
        .bind(serde_json::to_string(cert).expect("certificates serialise"))
        .execute(c)
        .map_err(unavailable)?;
    }
    Ok(())
}

/// Sets a device's certificate (only while it has none, when `only_if_absent`) and indexes it;
/// `false` when nothing was written.
fn write_device_certificate(
    c: &Connection,
    name: &str,
    certificate: &CertificateInfo,
    at: Option<Timestamp>,
    only_if_absent: bool,
) -> Result<bool, StoreError> {
    let condition = if only_if_absent { " AND certificate IS NULL" } else { "" };
    // Only a fixed condition is formatted in; the values are bound.
    let sql =
        format!("UPDATE devices SET certificate = ?, updated_at = COALESCE(?, updated_at) WHERE name = ?{condition}");
    let updated = query(sql)
        .bind(serde_json::to_string(certificate).expect("certificates serialise"))
        .bind(at.map(|t| t.as_millis()))
        .bind(name)
        .execute(c)
        .map_err(unavailable)?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    index(c, ThingKind::Device, name, Some(certificate))?;
    Ok(true)
}

fn entry_from_row(row: &Row) -> Result<CertificateEntry, StoreError> {
    let kind: String = row.try_get("thing_kind").map_err(unavailable)?;
    Ok(CertificateEntry {
        thing_name: thing(row.try_get("thing_name").map_err(unavailable)?)?,
        thing_kind: ThingKind::parse(&kind).ok_or_else(|| corrupt(format!("thing kind {kind}")))?,
        certificate: serde_json::from_str(row.try_get("doc").map_err(unavailable)?).map_err(corrupt)?,
    })
}

#[async_trait]
impl CertificateInventory for SqliteStore {
    async fn certificate(&self, id: &str) -> Result<Option<CertificateEntry>, StoreError> {
        let row = query("SELECT thing_name, thing_kind, doc FROM certificates WHERE id = ?")
            .bind(id)
            .fetch_optional(self.reader())
            .map_err(unavailable)?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn expiring_certificates(
        &self,
        before: Timestamp,
        page: PageRequest<ExpiryKey>,
    ) -> Result<Page<CertificateEntry, ExpiryKey>, StoreError> {
        let (after_ms, after_id) =
            page.exclusive_start.as_ref().map_or((i64::MIN, String::new()), |(t, id)| (t.as_millis(), id.clone()));
        let rows = query(
            "SELECT thing_name, thing_kind, doc FROM certificates WHERE status = 'ACTIVE' AND not_after < ? \
             AND (not_after > ? OR (not_after = ? AND id > ?)) ORDER BY not_after, id LIMIT ?",
        )
        .bind(before.as_millis())
        .bind(after_ms)
        .bind(after_ms)
        .bind(&after_id)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .map_err(unavailable)?;
        let items = rows.iter().map(entry_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_overfetch(items, page.limit, |e| (e.certificate.not_after, e.certificate.certificate_id.clone())))
    }

    async fn certificate_counts(&self, bounds: &[Timestamp]) -> Result<BTreeMap<String, CaCounts>, StoreError> {
        let sums: String = (0..bounds.len()).map(|i| format!(", SUM(not_after < ?) AS b{i}")).collect();
        // Only numbered placeholders are formatted in; the bounds are bound.
        let sql = format!("SELECT ca, COUNT(*) AS active{sums} FROM certificates WHERE status = 'ACTIVE' GROUP BY ca");
        let mut query = query(sql);
        for bound in bounds {
            query = query.bind(bound.as_millis());
        }
        let rows = query.fetch_all(self.reader()).map_err(unavailable)?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let before = (0..bounds.len())
                .map(|i| row.try_get::<i64>(format!("b{i}").as_str()).map_err(unavailable))
                .collect::<Result<Vec<_>, _>>()?;
            counts.insert(
                row.try_get::<String>("ca").map_err(unavailable)?,
                CaCounts { active: row.try_get("active").map_err(unavailable)?, before },
            );
        }
        Ok(counts)
    }

    async fn set_certificate_status(
        &self,
        id: &str,
        status: CertificateState,
        at: Timestamp,
        event: &Event,
    ) -> Result<Option<CertificateEntry>, StoreError> {
        self.write(|c| {
            let row = query("SELECT thing_name, thing_kind, doc FROM certificates WHERE id = ?")
                .bind(id)
                .fetch_optional(c)
                .map_err(unavailable)?;
            let Some(mut entry) = row.as_ref().map(entry_from_row).transpose()? else { return Ok(None) };
            let Some(after) = entry.certificate.changed_to(status, at) else { return Ok(Some(entry)) };
            let name = entry.thing_name.as_str();
            match entry.thing_kind {
                ThingKind::Core => {
                    let Some(before) = crate::cores::read_core(c, name)? else { return Ok(None) };
                    let mut core = before.clone();
                    core.certificate = Some(after.clone());
                    core.updated_at = Some(at);
                    crate::cores::write_core(c, Some(&before), Some(&core))?;
                }
                ThingKind::Device => {
                    write_device_certificate(c, name, &after, Some(at), false)?;
                }
            }
            write_event(c, event, at)?;
            entry.certificate = after;
            Ok(Some(entry))
        })
        .await
    }

    async fn replace_device_certificate(
        &self,
        name: &ThingName,
        certificate: &CertificateInfo,
        at: Timestamp,
        event: &Event,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            if !write_device_certificate(c, name.as_str(), certificate, Some(at), false)? {
                return Ok(false);
            }
            write_event(c, event, at)?;
            Ok(true)
        })
        .await
    }

    async fn fill_missing_certificate(
        &self,
        kind: ThingKind,
        name: &ThingName,
        certificate: &CertificateInfo,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            match kind {
                ThingKind::Core => {
                    let Some(before) = crate::cores::read_core(c, name.as_str())? else { return Ok(false) };
                    if before.certificate.is_some() {
                        return Ok(false);
                    }
                    let mut after = before.clone();
                    after.certificate = Some(certificate.clone());
                    crate::cores::write_core(c, Some(&before), Some(&after))?;
                }
                ThingKind::Device => {
                    if !write_device_certificate(c, name.as_str(), certificate, None, true)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
        .await
    }
}
