//! The benchmark's reference point only: the gateway over a data directory WITHOUT the
//! prediction log, so that `bench/gateway_bench.py` can measure what logging costs. Never a way
//! to serve: `vigil gateway` always logs. With `--log` the same binary logs (as `vigil
//! gateway` does), so that the log's cost can also be measured within one binary.
//!
//!     cargo build --release -p vigil-gateway --example unlogged_gateway
//!     target/release/examples/unlogged_gateway DATA_DIR 127.0.0.1:0 [--log [SPOOL_NAME]]

use std::sync::Arc;

// The allocator `vigil` runs with (and the bench gives it the same mimalloc options), so
// that the difference measured is the log's alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(addr)) = (args.next(), args.next()) else {
        eprintln!("usage: unlogged_gateway DATA_DIR ADDR [--log [SPOOL_NAME]]");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let store = vigil_store::open(&vigil_store::Location::DataDir(dir.clone()))?;
    // The same key as `vigil gateway`: the unit key (A/B buckets) is derived from it.
    let key = vigil_store::keyfile::load(&vigil_store::keyfile::default_path(&dir))?;
    let registry = Arc::new(vigil_core::registry::Registry::new(store, Arc::new(vigil_core::ids::SystemClock), Arc::new(vigil_core::ids::UuidV7Ids), Arc::new(key)));
    let artifacts = vigil_gateway::Artifacts::local(dir.join("artifacts"));
    // `--log`: the same binary with the prediction log on (spool `DATA_DIR/spool/bench`, or
    // the name given after it: two logged builds compared over one data directory), so that
    // the log's cost can be measured without the difference between two binaries.
    let gw = Arc::new(if args.next().as_deref() == Some("--log") {
        vigil_store::sqlite::set_cache_kib(2 << 10);
        let spool = args.next().unwrap_or_else(|| "bench".into());
        vigil_gateway::Gateway::with_log(registry, artifacts, None, vigil_gateway::SpoolConfig::new(dir.join("spool").join(spool)))?
    } else {
        vigil_gateway::Gateway::new(registry, artifacts, None)
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let first = gw.clone();
        tokio::task::spawn_blocking(move || first.catalog.refresh()).await??;
        tokio::spawn(vigil_gateway::follow_registry(gw.clone(), std::time::Duration::from_secs(1)));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("gateway listening on http://{}", listener.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        vigil_gateway::serve(listener, gw, std::future::pending()).await?;
        Ok(())
    })
}
