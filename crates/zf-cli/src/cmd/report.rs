//! `zfnet report`: the report of a reproduction's folder (zf-report does the work).

use std::path::PathBuf;

use anyhow::Result;

/// Write the report of a reproduction: RUN/report/index.html (every figure and table of the
/// paper, readable offline), results.json (every number, and the claims) and claims.md (each
/// claim of the paper, the quantity measured, the rule, the value and the verdict).
///
/// RUN is a folder `cargo xtask reproduce-paper` wrote (it runs this command at its end); it
/// needs RUN/reproduce.json, which that writes. Stages that did not run leave their claims
/// "not measured"; a stage file that does not parse is an error naming it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  zfnet report target/reproduce/default")]
pub struct Args {
    /// The reproduction's folder.
    #[arg(value_name = "RUN")]
    run: PathBuf,
}

#[allow(clippy::print_stdout)]
pub fn run(args: Args) -> Result<()> {
    let report = zf_report::write_report_as(&args.run, crate::REVISION)?;
    let held: Vec<&str> = report.claims.iter().filter(|c| c.held == Some(true)).map(|c| c.id.as_str()).collect();
    println!(
        "{} of {} claims held ({})",
        held.len(),
        report.claims.len(),
        if held.is_empty() { "none".to_string() } else { held.join(", ") }
    );
    println!("report: {}", report.dir.join("index.html").display());
    Ok(())
}
