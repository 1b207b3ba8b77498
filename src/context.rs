//! What every command needs: the store, opened from `--store` / `DGM_STORE`.

use anyhow::Context as _;
use dgm_events::{Store, StoreUrl};

pub struct Context {
    pub store: Store,
    pub json: bool,
}

impl Context {
    pub async fn open(store: Option<&str>, json: bool) -> anyhow::Result<Self> {
        let url = match store {
            Some(raw) => raw.parse::<StoreUrl>()?,
            None => StoreUrl::default_sqlite(),
        };
        let store = Store::open(&url).await.context("opening the event store")?;
        Ok(Self { store, json })
    }
}
