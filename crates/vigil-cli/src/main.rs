//! The `vigil` binary: a thin shell over `vigil_core::registry::Registry`.
//!
//! It parses arguments, opens the store (embedded SQLite in a data directory, or PostgreSQL),
//! obtains the acting user's identity and password, calls one use case, and prints the result
//! as a table or as JSON. No rule lives here. Exit codes: 0 ok, 1 refused / not found /
//! failed, 2 usage error (including malformed input values).

mod cli;
mod commands;
mod demo;
mod deploy;
mod drift;
mod remote;
mod table;
mod validate;
mod views;

use clap::Parser;

// mimalloc keeps freed memory for reuse: a drift check allocates and frees a sorted copy of
// every column (8 MB per million rows), and with the system allocator each one is returned
// to the kernel and faulted in again. Measured on the drift bench: the one-thread check
// 1.8 s → 1.4 s CPU, reading the Parquet files 1.0 s → 0.7 s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// The options, each with the older name mimalloc also reads it by.
const LEAN_ALLOCATOR: [(&str, &str, &str); 2] = [("MIMALLOC_ARENA_EAGER_COMMIT", "MIMALLOC_EAGER_REGION_COMMIT", "0"), ("MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY", "10")];

/// The servers run long and keep little live data, and mimalloc's defaults hold on to memory
/// they freed: it commits arena memory eagerly and keeps it resident, which doubled the
/// gateway's resident memory under load (measured: 44–55 MB vs 25–30 MB without eager
/// commit, at about the same CPU), and it returns freed pages to the system only after they
/// have been unused for a second (`purge_delay`, 1000 ms in mimalloc 3). After a burst (the
/// gateway bench's 100-row, shadow and feature runs) that held the pages of the last second's
/// work: 53–58 MB at the end of the runs, 43–46 MB with a delay of 10 ms (mimalloc 2's
/// default). mimalloc reads its options from the environment as the process starts, so a
/// server process that was started without them runs itself again with them (the same
/// arguments and environment otherwise). An operator's own settings are kept, under any of
/// the names and spellings mimalloc reads.
fn lean_allocator() {
    // mimalloc matches the names without regard to case, and takes the older names too: an
    // option the operator set under any of them is theirs.
    let set: Vec<String> = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).map(|k| k.to_ascii_uppercase()).collect();
    let missing: Vec<(&str, &str)> = LEAN_ALLOCATOR.into_iter().filter(|(name, older, _)| !set.iter().any(|k| k == name || k == older)).map(|(name, _, value)| (name, value)).collect();
    if missing.is_empty() {
        return;
    }
    #[cfg(unix)]
    if let Ok(exe) = std::env::current_exe() {
        use std::os::unix::process::CommandExt;
        let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).envs(missing).exec();
        // Only a failed exec returns: carry on as started.
        eprintln!("vigil: could not restart with the allocator's options ({err}); running with its defaults");
    }
}
use vigil_core::ErrorKind;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::Gateway { .. } | cli::Command::Serve { .. }) {
        lean_allocator();
        // A panic (a defect; request handlers and model runs contain theirs) is reported by
        // where it happened, never by its message: a message could hold request data (PHI).
        std::panic::set_hook(Box::new(|info| {
            let thread = std::thread::current();
            eprintln!("{}", fault_report(thread.name().unwrap_or("unnamed"), info.location().map(|l| (l.file(), l.line()))));
        }));
    }
    let json = cli.global.json;
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let domain = err.downcast_ref::<vigil_core::Error>();
            if json {
                let body = match domain {
                    Some(e) => vigil_api::error(e),
                    None => serde_json::json!({"error": {"code": "cli_error", "message": format!("{err:#}")}}),
                };
                println!("{body}");
            } else {
                match domain {
                    Some(e) => eprintln!("error: {} [{}]", e.message(), e.code()),
                    None => eprintln!("error: {err:#}"),
                }
            }
            match domain.map(|e| e.kind()) {
                Some(ErrorKind::InvalidInput) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// What a server process prints for a panic: the thread and the place, not the message.
fn fault_report(thread: &str, at: Option<(&str, u32)>) -> String {
    let at = at.map_or_else(|| "an unknown place".to_owned(), |(file, line)| format!("{file}:{line}"));
    format!("vigil: internal fault in thread '{thread}' at {at} (its message is withheld: it could hold request data)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fault_is_reported_by_its_place_only() {
        let r = super::fault_report("tokio-rt-worker", Some(("crates/vigil-onnx/src/ops/tree.rs", 42)));
        assert_eq!(r, "vigil: internal fault in thread 'tokio-rt-worker' at crates/vigil-onnx/src/ops/tree.rs:42 (its message is withheld: it could hold request data)");
        assert!(super::fault_report("t", None).contains("an unknown place"));
    }
}
