//! `ralmspec fetch`: download and verify assets ahead of time.

use anyhow::Result;
use ralmspec_assets::{Asset, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Assets to fetch (`all`, or names: smollm2, qwen2.5-0.5b, minilm, wiki-kb, fanoutqa).
    #[arg(default_value = "all")]
    assets: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let mut assets = Vec::new();
    for name in &args.assets {
        if name == "all" {
            assets.extend(Asset::ALL);
        } else {
            assets.push(name.parse::<Asset>()?);
        }
    }
    let store = Store::from_env()?;
    for asset in assets {
        let path = store.fetch(asset)?;
        println!("{asset}\t{}", path.display());
    }
    Ok(())
}
