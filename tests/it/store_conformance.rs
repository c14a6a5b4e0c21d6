//! The template-store conformance suite against the SQLite adapter.

use std::sync::Arc;

use ggprov_store_sqlite::SqliteStore;

/// A fresh store in its own directory under `target/tmp`.
async fn sqlite_store() -> Arc<SqliteStore> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir").keep();
    Arc::new(SqliteStore::open(&dir.join("store.sqlite")).await.expect("store opens"))
}

ggprov_testkit::template_store_conformance!(sqlite_store().await);

mod queue {
    use super::sqlite_store;

    ggprov_testkit::work_queue_conformance!(sqlite_store().await);
}

mod cores {
    use super::sqlite_store;

    ggprov_testkit::core_store_conformance!(sqlite_store().await);
}

mod applications {
    use super::sqlite_store;

    ggprov_testkit::application_store_conformance!(sqlite_store().await);
}

/// The same suite with the read models cached (role `all`): every summary read after a write
/// must see it.
mod cores_with_cached_read_models {
    use std::sync::Arc;

    use ggprov_store_sqlite::SqliteStore;

    async fn cached_store() -> Arc<SqliteStore> {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir").keep();
        Arc::new(SqliteStore::open(&dir.join("store.sqlite")).await.expect("store opens").with_read_model_cache())
    }

    ggprov_testkit::core_store_conformance!(cached_store().await);
}
